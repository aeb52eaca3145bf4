"""MongoDB source over a real socket (nx-27017, see tests/support/mongodb.py) into DuckDB
and PostgreSQL.

The fixture documents stay inside what the test server stores (no Decimal128, BSON
Timestamp, UUID subtype, regex); tests/unit/test_mongodb_convert.py covers those."""

from __future__ import annotations

import datetime as dt
import json
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import duckdb
import psycopg
import pymongo
import pytest

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
from deltaflow.orchestration.runner import RunResult
from tests.support.mongodb import MongoServer

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def orders(mongodb_server: MongoServer, mongo_db: str) -> Iterator[Any]:
    """The test database's orders collection."""
    with pymongo.MongoClient(
        mongodb_server.uri, tz_aware=True, serverSelectionTimeoutMS=5000
    ) as client:
        yield client[mongo_db]["orders"]


def run(
    tmp_path: Path,
    server: MongoServer,
    db: str,
    dsn: str,
    source: str,
    destination: str,
    **step: str,
) -> RunResult:
    extra = "".join(f"    {k}: {v}\n" for k, v in step.items())
    path = tmp_path / "pipeline.yml"
    path.write_text(
        textwrap.dedent(f"""\
        pipeline_id: mongo
        connections:
          mongo: {{type: mongodb, uri: "{server.uri}", database: {db},
                   server_selection_timeout: 10}}
          wh: {{type: duckdb, path: wh.duckdb}}
          pg: {{type: postgres, dsn: "{dsn}"}}
        steps:
          - step_id: orders
            type: sync
            source: {source}
            destination: {destination}
        """)
        + extra
    )
    result = run_pipeline(
        load_pipeline(path), context=RunContext(), store=RunStore(tmp_path / "runs.db")
    )
    assert result.ok, result.error
    return result


def shop_orders(count: int) -> list[dict[str, Any]]:
    """Orders with nested documents, arrays, a field whose type changes half way, and
    every BSON type the test server stores."""
    return [
        {
            "_id": bson.ObjectId.from_datetime(T0 + dt.timedelta(seconds=i)),
            "order_no": i,
            "big": bson.Int64(2**40 + i),
            "total": i * 1.25,
            "paid": i % 2 == 0,
            "placed_at": T0 + dt.timedelta(seconds=i, milliseconds=123),
            "customer": {"name": f"Kundin {i}", "address": {"city": "Köln", "zip": f"{i:05d}"}},
            "items": [{"sku": f"S{i}", "qty": 1 + i % 3}],
            "tags": ["a", "b"] if i % 2 else [],
            "code": i if i < count // 2 else f"C-{i}",  # changes type half way
            "raw": b"\x00\xff" + bytes([i % 256]),
            "note": None,
        }
        for i in range(count)
    ]


@pytest.mark.parametrize("dest", ["duckdb", "pg"])
def test_a_collection_loads_with_the_documented_mapping(
    tmp_path: Path, mongodb_server: MongoServer, mongo_db: str, pg_dsn: str, dest: str, orders: Any
) -> None:
    orders.insert_many(shop_orders(200))
    destination = (
        "{connection: wh, table: orders}" if dest == "duckdb" else "{connection: pg, table: orders}"
    )

    result = run(
        tmp_path,
        mongodb_server,
        mongo_db,
        pg_dsn,
        "{connection: mongo, collection: orders}",
        destination,
    )

    assert (result.steps[0].rows_read, result.steps[0].rows_loaded) == (200, 200)
    # placed_at as epoch milliseconds: DuckDB needs pytz to hand out TIMESTAMPTZ values
    epoch_ms = (
        "epoch_ms(placed_at)"
        if dest == "duckdb"
        else "(extract(epoch FROM placed_at) * 1000)::bigint"
    )
    select = (
        f"SELECT _id, order_no, big, total, paid, {epoch_ms}, customer, items, tags, code, "
        "raw, note FROM orders WHERE order_no IN (1, 150) ORDER BY order_no"
    )
    if dest == "duckdb":
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
            rows = con.sql(select).fetchall()
            types = dict(
                con.sql(
                    "SELECT column_name, data_type FROM duckdb_columns() "
                    "WHERE table_name = 'orders'"
                ).fetchall()
            )
        assert (
            types["customer"] == 'STRUCT(address STRUCT(city VARCHAR, zip VARCHAR), "name" VARCHAR)'
        )
        assert types["items"] == "STRUCT(qty BIGINT, sku VARCHAR)[]"
        assert types["code"] == "JSON"
        assert types["placed_at"] == "TIMESTAMP WITH TIME ZONE"
    else:
        with psycopg.connect(pg_dsn) as con:
            rows = con.execute(select).fetchall()  # type: ignore[arg-type]
            types = dict(
                con.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'orders'::regclass AND attnum > 0"
                ).fetchall()
            )
        assert (types["customer"], types["items"], types["code"]) == ("jsonb", "jsonb", "jsonb")
        assert types["placed_at"] == "timestamp with time zone"
        assert types["_id"] == "text"
    first, later = rows
    oid = str(bson.ObjectId.from_datetime(T0 + dt.timedelta(seconds=1)))
    assert first[0] == oid
    assert first[1:5] == (1, 2**40 + 1, 1.25, False)
    placed = T0 + dt.timedelta(seconds=1, milliseconds=123)
    assert first[5] == int(placed.timestamp() * 1000)
    customer = first[6] if isinstance(first[6], dict) else json.loads(first[6])
    assert customer == {"name": "Kundin 1", "address": {"city": "Köln", "zip": "00001"}}
    items = first[7] if isinstance(first[7], list) else json.loads(first[7])
    assert items == [{"sku": "S1", "qty": 2}]
    assert list(first[8]) == ["a", "b"]
    # the field that changed type keeps both kinds of value, as JSON
    decode = json.loads if dest == "duckdb" else (lambda v: v)  # jsonb arrives decoded
    assert (decode(first[9]), decode(later[9])) == (1, "C-150")
    assert bytes(first[10]) == b"\x00\xff\x01"
    assert first[11] is None


def test_a_collection_is_read_in_id_ranges_each_document_once(
    tmp_path: Path,
    mongodb_server: MongoServer,
    mongo_db: str,
    pg_dsn: str,
    caplog: pytest.LogCaptureFixture,
    orders: Any,
) -> None:
    # Integer _ids: the test server cannot range-query ObjectIds (real MongoDB can).
    orders.insert_many([{"_id": i, "v": f"v{i}"} for i in range(3000)])
    caplog.set_level(logging.INFO, logger="deltaflow.mongodb")

    result = run(
        tmp_path,
        mongodb_server,
        mongo_db,
        pg_dsn,
        "{connection: mongo, collection: orders, splits: 3}",
        "{connection: wh, table: orders}",
        parallelism="3",
    )

    assert result.steps[0].rows_loaded == 3000
    # (the test server sorts integer _ids as text, so its boundaries are not the thirds
    # real MongoDB gives; the ranges still cover every document once)
    assert "orders: 3 splits by _id from " in caplog.text
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert con.sql("SELECT count(DISTINCT _id), sum(_id) FROM orders").fetchall() == [
            (3000, sum(range(3000)))
        ]


def test_incremental_picks_up_inserted_and_updated_documents_only(
    tmp_path: Path, mongodb_server: MongoServer, mongo_db: str, pg_dsn: str, orders: Any
) -> None:
    orders.insert_many(
        [{"_id": i, "v": f"v{i}", "updated_at": T0 + dt.timedelta(minutes=i)} for i in range(100)]
    )
    source = "{connection: mongo, collection: orders}"
    destination = "{connection: pg, table: orders, write_mode: merge, primary_key: [_id]}"
    first = run(
        tmp_path,
        mongodb_server,
        mongo_db,
        pg_dsn,
        source,
        destination,
        incremental="{cursor: updated_at}",
    )
    assert first.steps[0].rows_loaded == 100

    later = T0 + dt.timedelta(days=1)
    orders.insert_many([{"_id": 100 + i, "v": "new", "updated_at": later} for i in range(2)])
    # replace_one: the test server stores a $set datetime as text
    orders.replace_one({"_id": 7}, {"v": "changed", "updated_at": later})
    second = run(
        tmp_path,
        mongodb_server,
        mongo_db,
        pg_dsn,
        source,
        destination,
        incremental="{cursor: updated_at}",
    )

    step = second.steps[0]
    plan = step.details["incremental"]
    assert plan["mode"] == "incremental"
    assert plan["start"] == "2024-03-01T01:39:00.000000+00:00"
    # 3 changed documents and the one at the watermark (the window starts inclusive,
    # the merge absorbs it); the other 99 are not read.
    assert step.rows_read == 4
    with psycopg.connect(pg_dsn) as con:
        stored = con.execute("SELECT _id, v FROM orders ORDER BY _id").fetchall()
    assert len(stored) == 102
    assert stored[7] == (7, "changed")
    assert stored[100:] == [(100, "new"), (101, "new")]


@pytest.mark.parametrize("dest", ["duckdb", "pg"])
def test_a_document_that_does_not_fit_is_quarantined_and_the_rest_loads(
    tmp_path: Path, mongodb_server: MongoServer, mongo_db: str, pg_dsn: str, orders: Any, dest: str
) -> None:
    # The sample (first and last document) sees qty as an integer; one document in the
    # middle holds a sub-document there, another a field the sample never saw.
    documents: list[dict[str, Any]] = [{"_id": i, "qty": i} for i in range(10)]
    documents[4]["qty"] = {"unexpected": True}
    documents[6]["extra"] = "late field"
    orders.insert_many(documents)

    result = run(
        tmp_path,
        mongodb_server,
        mongo_db,
        pg_dsn,
        "{connection: mongo, collection: orders, sample_size: 2}",
        f"{{connection: {'wh' if dest == 'duckdb' else 'pg'}, table: orders}}",
    )

    step = result.steps[0]
    assert (step.rows_read, step.rows_loaded, step.details["quarantined"]) == (10, 8, 2)
    count = "SELECT count(*) FROM orders"
    quarantined = (
        "SELECT reason_code, reason, record, run_id FROM orders__quarantine ORDER BY reason"
    )
    if dest == "duckdb":
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
            assert con.sql(count).fetchall() == [(8,)]
            held = con.sql(quarantined).fetchall()
    else:
        with psycopg.connect(pg_dsn) as con:
            assert con.execute(count).fetchall() == [(8,)]
            held = con.execute(quarantined).fetchall()  # type: ignore[arg-type]
    assert [(code, reason) for code, reason, _, _ in held] == [
        ("MONGODB_CONVERSION", "fields extra are not in the schema inferred from the sample"),
        ("MONGODB_CONVERSION", 'qty: {"unexpected": true} (object) is not int64'),
    ]
    assert json.loads(held[1][2]) == {"_id": 4, "qty": {"unexpected": True}}
    assert {r[3] for r in held} == {result.run.run_id}
