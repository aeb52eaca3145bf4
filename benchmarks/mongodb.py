"""MongoDB source: BSON -> Arrow conversion speed, and where an end-to-end read spends its time.

    .venv/bin/python benchmarks/mongodb.py                       # 1M documents per shape, 3 runs
    .venv/bin/python benchmarks/mongodb.py --docs 200000         # a quick look
    .venv/bin/python benchmarks/mongodb.py --pymongoarrow        # also the pymongoarrow peer

Conversion ("documents already fetched -> Arrow"): the documents of each shape are
encoded to BSON once (benchmarks/.data/), then read back in chunks of 65,536 as pymongo
hands them over (``bson.decode_all``, its C extension, timed apart as "decode") and
turned into record batches by ``deltaflow.connectors.mongodb.to_batch`` ("convert"),
three times per shape (``--runs``); the median run is reported with every run's rate,
since this machine's speed drifts by 10-20 % between runs. Two shapes: ``orders``
(nested customer and address, a list of item sub-documents, a list of tags, two dates,
ObjectId _id: 11 top-level fields) and ``flat`` (nine scalar fields and an ObjectId _id).

The peer (``--pymongoarrow``) is MongoDB's pymongoarrow converting the same raw BSON in
C++ (decode and convert in one), installed in its own environment
(benchmarks/.venv-pymongoarrow, pyarrow pinned to the 25.0.0 it is built against).

End to end (``--e2e N``, default 20,000 documents): the ``orders`` documents are inserted
into the test server (nx-27017, started here), then one read is split into the time the
server takes to hand over the raw BSON, the decode and the conversion, next to a whole
DeltaFlow source read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / ".data"
PEER = HERE / ".venv-pymongoarrow" / "bin" / "python"
CHUNK = 65_536
BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
sys.path.insert(0, str(ROOT))


def orders(i: int) -> dict[str, Any]:
    import bson

    return {
        "_id": bson.ObjectId.from_datetime(BASE + dt.timedelta(seconds=i)),
        "order_no": i,
        "customer": {
            "name": f"Customer {i % 5000}",
            "email": f"c{i % 5000}@example.com",
            "address": {"city": ("Köln", "Paris", "Lima")[i % 3], "zip": f"{i % 99999:05d}"},
        },
        "items": [
            {"sku": f"SKU-{(i * 7 + k) % 1000}", "qty": k + 1, "price": 1 + (i % 100) * 0.37}
            for k in range(1 + i % 3)
        ],
        "total": (i % 1000) * 1.11,
        "status": ("new", "paid", "shipped", "cancelled")[i % 4],
        "created_at": BASE + dt.timedelta(seconds=i),
        "updated_at": BASE + dt.timedelta(seconds=i, milliseconds=i % 1000),
        "tags": ["a", "b"][: i % 3],
        "paid": i % 2 == 0,
        "note": None if i % 5 else "call first",
    }


def flat(i: int) -> dict[str, Any]:
    import bson

    return {
        "_id": bson.ObjectId.from_datetime(BASE + dt.timedelta(seconds=i)),
        "n": i,
        "big": bson.Int64(i * 1_000_003),
        "amount": i * 0.25,
        "status": ("new", "paid", "shipped")[i % 3],
        "email": f"user{i % 10000}@example.com",
        "active": i % 2 == 0,
        "at": BASE + dt.timedelta(milliseconds=i),
        "score": (i % 97) / 7,
        "note": None if i % 4 else "n",
    }


SHAPES = {"orders": orders, "flat": flat}


def bson_file(shape: str, docs: int) -> Path:
    """The shape's documents as concatenated BSON, written once."""
    import bson

    path = DATA / f"mongo_{shape}_{docs}.bson"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        make = SHAPES[shape]
        with path.open("wb") as out:
            for i in range(docs):
                out.write(bson.encode(make(i)))
    return path


def chunks(path: Path) -> list[bytes]:
    """The file cut into raw BSON chunks of CHUNK documents."""
    data = path.read_bytes()
    out, start, count, position = [], 0, 0, 0
    while position < len(data):
        position += int.from_bytes(data[position : position + 4], "little")
        count += 1
        if count == CHUNK:
            out.append(data[start:position])
            start, count = position, 0
    if start < len(data):
        out.append(data[start:])
    return out


def ours(path: Path) -> tuple[float, float, int]:
    """Seconds to decode and to convert every chunk, and the rows converted."""
    import bson

    from deltaflow.connectors import mongodb

    mongodb._KINDS.update(mongodb._kinds())
    options = bson.CodecOptions(tz_aware=False)  # as the source's client
    raw = chunks(path)
    schema = mongodb.infer_schema(bson.decode_all(raw[0], options)[:1000], mongodb.Inference())
    decode = convert = 0.0
    rows = 0
    for chunk in raw:
        t0 = time.perf_counter()
        with mongodb.gc_paused():  # as the source decodes a batch
            documents = bson.decode_all(chunk, options)
        t1 = time.perf_counter()
        converted = mongodb.to_batch(documents, schema)
        t2 = time.perf_counter()
        assert not converted.rejected, converted.rejected[:1]
        decode, convert, rows = decode + t1 - t0, convert + t2 - t1, rows + converted.batch.num_rows
    return decode, convert, rows


PEER_SCRIPT = """
import sys, time, bson, pyarrow as pa
from pymongoarrow.api import Schema
from pymongoarrow.context import PyMongoArrowContext
from pymongoarrow.types import ObjectIdType
sys.path.insert(0, sys.argv[2])
from mongodb import chunks, SHAPES
ts = pa.timestamp("ms", tz="UTC")
shapes = {
  "orders": {"_id": ObjectIdType(), "order_no": pa.int64(),
    "customer": pa.struct([("name", pa.string()), ("email", pa.string()),
                           ("address", pa.struct([("city", pa.string()), ("zip", pa.string())]))]),
    "items": pa.list_(pa.struct([("sku", pa.string()), ("qty", pa.int64()),
                                 ("price", pa.float64())])),
    "total": pa.float64(), "status": pa.string(), "created_at": ts, "updated_at": ts,
    "tags": pa.list_(pa.string()), "paid": pa.bool_(), "note": pa.string()},
  "flat": {"_id": ObjectIdType(), "n": pa.int64(), "big": pa.int64(), "amount": pa.float64(),
    "status": pa.string(), "email": pa.string(), "active": pa.bool_(), "at": ts,
    "score": pa.float64(), "note": pa.string()},
}
from pathlib import Path
path = Path(sys.argv[1]); shape = path.name.split("_")[1]
schema = Schema(shapes[shape]); rows = 0
raw = chunks(path)
t = time.perf_counter()
for chunk in raw:
    context = PyMongoArrowContext(schema)
    context.process_bson_stream(chunk)
    rows += context.finish().num_rows
print(time.perf_counter() - t, rows)
"""


def peer(path: Path) -> tuple[float, int] | None:
    if not PEER.exists():
        print("setting up the pymongoarrow peer in benchmarks/.venv-pymongoarrow", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER.parent.parent)], check=True)
        subprocess.run(
            [str(PEER), "-m", "pip", "install", "-q", "pyarrow==25.0.0", "pymongoarrow==1.15.0"],
            check=True,
        )
    done = subprocess.run(
        [str(PEER), "-c", PEER_SCRIPT, str(path), str(HERE)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, rows = done.stdout.split()
    return float(seconds), int(rows)


def end_to_end(docs: int) -> None:
    import bson
    import pymongo
    from tests.support.mongodb import running_mongodb

    from deltaflow.config.connections import MongoDBConnection
    from deltaflow.config.sources import MongoSource
    from deltaflow.connectors import mongodb
    from deltaflow.connectors.protocol import RunResources

    with running_mongodb() as server:
        client: Any = pymongo.MongoClient(server.uri, tz_aware=False)
        collection = client["bench"]["orders"]
        t = time.perf_counter()
        for start in range(0, docs, 5000):
            collection.insert_many([orders(i) for i in range(start, min(docs, start + 5000))])
        print(f"  inserted {docs:,} documents in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        raw = list(collection.find_raw_batches(batch_size=CHUNK))
        server_s = time.perf_counter() - t
        options = bson.CodecOptions(tz_aware=False)  # as the source's client
        t = time.perf_counter()
        with mongodb.gc_paused():
            decoded = [bson.decode_all(b, options) for b in raw]
        decode_s = time.perf_counter() - t
        mongodb._KINDS.update(mongodb._kinds())
        schema = mongodb.infer_schema(decoded[0][:1000], mongodb.Inference())
        t = time.perf_counter()
        rows = sum(mongodb.to_batch(d, schema).batch.num_rows for d in decoded)
        convert_s = time.perf_counter() - t
        client.close()

        conn = MongoDBConnection.model_validate(
            {"type": "mongodb", "uri": server.uri, "database": "bench"}
        )
        spec = MongoSource.model_validate({"connection": "m", "collection": "orders"})
        resources = RunResources(Path.cwd(), "bench")
        t = time.perf_counter()
        source = mongodb.MongoDBSource(conn, spec, resources, CHUNK, 1)
        source.discover()
        read = sum(b.num_rows for split in source.splits() for b in source.read(split))
        total_s = time.perf_counter() - t
        resources.close()
    assert rows == read == docs
    whole = server_s + decode_s + convert_s
    print(f"  server hands over raw BSON   {server_s:7.2f} s  {100 * server_s / whole:5.1f} %")
    print(f"  decode (pymongo C extension) {decode_s:7.2f} s  {100 * decode_s / whole:5.1f} %")
    print(f"  convert to Arrow (DeltaFlow) {convert_s:7.2f} s  {100 * convert_s / whole:5.1f} %")
    print(
        f"  DeltaFlow source read        {total_s:7.2f} s  {docs / total_s:,.0f} docs/s "
        "(sample, discover, read)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--e2e", type=int, default=20_000, help="0 to skip")
    parser.add_argument("--runs", type=int, default=3, help="conversion runs per shape")
    parser.add_argument("--pymongoarrow", action="store_true", help="also the peer")
    args = parser.parse_args()
    for shape in SHAPES:
        path = bson_file(shape, args.docs)
        runs = sorted((ours(path) for _ in range(args.runs)), key=lambda run: run[1])
        decode, convert, rows = runs[len(runs) // 2]  # the median conversion
        spread = ", ".join(f"{r / c:,.0f}" for _, c, r in runs)
        print(
            f"{shape:6s} {rows:,} documents, median of {len(runs)} runs: "
            f"convert {convert:.2f} s = {rows / convert:,.0f} docs/s (runs: {spread});"
            f" decode {decode:.2f} s = {rows / decode:,.0f} docs/s;"
            f" both {rows / (decode + convert):,.0f} docs/s"
        )
        if args.pymongoarrow:
            found = peer(path)
            if found:
                seconds, count = found
                print(f"       pymongoarrow (decode and convert): {count / seconds:,.0f} docs/s")
    if args.e2e:
        print(f"end to end, {args.e2e:,} orders documents on nx-27017:")
        end_to_end(args.e2e)


if __name__ == "__main__":
    main()
