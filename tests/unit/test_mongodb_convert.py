"""MongoDB documents -> schema -> Arrow: the inference rules and every BSON type.

These run on decoded documents (what pymongo hands over), so they cover the BSON types
the test server cannot store (Decimal128, UUID subtypes, Timestamp)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import bson
import pyarrow as pa
import pytest
from bson.decimal128 import Decimal128

from deltaflow.connectors import mongodb
from deltaflow.connectors.mongodb import SLICE, Inference, column_array, infer_schema, to_batch
from deltaflow.schema.types import LogicalType, TableSchema, parse_type

OID = bson.ObjectId("65a1b2c3d4e5f60718293a4b")
WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _kinds() -> None:
    mongodb._KINDS.update(mongodb._kinds())


def every_type() -> dict[str, Any]:
    return {
        "_id": OID,
        "int": 7,
        "long": bson.Int64(2**40),
        "double": 1.25,
        "string": "ünïcødé",
        "bool": True,
        "date": WHEN,
        "decimal": Decimal128("1234567890123456789.123456789012345"),
        "uuid": bson.Binary(uuid.UUID(int=5).bytes, 4),
        "bytes": b"\x00\xff\x00",
        "ts": bson.Timestamp(1_700_000_000, 7),
        "regex": bson.Regex("^a.c$", "im"),
        "code": bson.Code("function () { return 1 }"),
        "min": bson.MinKey(),
        "nested": {"city": "Köln", "geo": {"lat": 50.9, "lon": 6.9}},
        "tags": ["a", "b"],
        "none": None,
    }


def convert(documents: list[dict[str, Any]], **how: Any) -> tuple[TableSchema, Any]:
    schema = infer_schema(documents, Inference(**how))
    return schema, to_batch(documents, schema)


def test_every_bson_type_maps_as_documented() -> None:
    schema, out = convert([every_type()])

    types = {c.name: str(c.type) for c in schema.columns}
    assert types == {
        "_id": "string",
        "int": "int64",
        "long": "int64",
        "double": "float64",
        "string": "string",
        "bool": "boolean",
        "date": "timestamp[ms, UTC]",
        "decimal": "decimal",
        "uuid": "uuid",
        "bytes": "binary",
        "ts": "struct<t: timestamp[s, UTC], i: int64>",
        "regex": "string",
        "code": "string",
        "min": "string",
        "nested": "struct<city: string, geo: struct<lat: float64, lon: float64>>",
        "tags": "list<string>",
        "none": "json",
    }
    assert schema.names[0] == "_id"
    assert schema.primary_key == ("_id",)
    assert out.rejected == []
    (row,) = out.batch.to_pylist()
    assert row["_id"] == "65a1b2c3d4e5f60718293a4b"
    assert row["long"] == 2**40
    assert row["date"] == WHEN  # milliseconds kept, UTC
    assert row["decimal"] == "1234567890123456789.123456789012345"  # exact, as text
    assert row["uuid"] == "00000000-0000-0000-0000-000000000005"
    assert row["bytes"] == b"\x00\xff\x00"
    assert row["ts"] == {"t": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC), "i": 7}
    assert row["regex"] == "/^a.c$/im"
    assert row["code"] == "function () { return 1 }"
    assert row["min"] == "minKey"
    assert row["nested"] == {"city": "Köln", "geo": {"lat": 50.9, "lon": 6.9}}
    assert row["none"] is None


def test_a_field_whose_type_changes_becomes_json_and_keeps_every_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    documents = [{"_id": i, "v": i} for i in range(3)] + [{"_id": 3, "v": "three"}]
    with caplog.at_level(logging.WARNING, logger="deltaflow.mongodb"):
        schema, out = convert(documents)
    assert schema.column("v") is not None
    assert str(schema.column("v").type) == "json"  # type: ignore[union-attr]
    assert "field v has the types int, string in the sample: read as json" in caplog.text
    assert out.batch.column("v").to_pylist() == ["0", "1", "2", '"three"']
    _, as_text = convert(documents, on_conflict="string")
    assert as_text.batch.column("v").to_pylist() == ["0", "1", "2", "three"]


def test_ints_and_doubles_widen_to_float_and_arrays_of_mixed_types_are_json() -> None:
    schema, out = convert(
        [{"_id": 1, "n": 1, "a": [1, 2]}, {"_id": 2, "n": 2.5, "a": [1, "x", {"k": 1}]}]
    )
    assert str(schema.column("n").type) == "float64"  # type: ignore[union-attr]
    assert str(schema.column("a").type) == "json"  # type: ignore[union-attr]
    assert out.batch.column("n").to_pylist() == [1.0, 2.5]
    assert [json.loads(v) for v in out.batch.column("a").to_pylist()] == [
        [1, 2],
        [1, "x", {"k": 1}],
    ]


def test_documents_deeper_than_max_nesting_are_json_in_extended_json() -> None:
    document = {"_id": 1, "a": {"b": {"c": {"when": WHEN, "id": OID}}}}
    schema, out = convert([document], max_nesting=2)
    # two levels of structs, the third level is JSON
    assert str(schema.column("a").type) == "struct<b: struct<c: json>>"  # type: ignore[union-attr]
    (row,) = out.batch.to_pylist()
    assert json.loads(row["a"]["b"]["c"]) == {
        "when": {"$date": "2024-01-02T03:04:05.678Z"},
        "id": {"$oid": str(OID)},
    }


def test_a_declared_schema_overrides_inference() -> None:
    declared = {"price": parse_type("decimal(12,2)"), "meta.code": parse_type("string")}
    schema, out = convert(
        [{"_id": 1, "price": Decimal128("9.99"), "meta": {"code": 12}}], declared=declared
    )
    assert str(schema.column("price").type) == "decimal(12,2)"  # type: ignore[union-attr]
    assert str(schema.column("meta").type) == "struct<code: string>"  # type: ignore[union-attr]
    (row,) = out.batch.to_pylist()
    assert row["price"] == Decimal("9.99")
    assert row["meta"] == {"code": "12"}


def test_a_document_a_column_cannot_hold_is_left_out_with_its_reason() -> None:
    schema = infer_schema([{"_id": 1, "n": 5}], Inference())
    out = to_batch([{"_id": 1, "n": 5}, {"_id": 2, "n": {"not": "a number"}}], schema)
    assert out.batch.column("_id").to_pylist() == [1]
    ((document, reason),) = out.rejected
    assert document["_id"] == 2
    assert reason == 'n: {"not": "a number"} (object) is not int64'


def test_fields_outside_the_sampled_schema_are_never_dropped_silently() -> None:
    schema = infer_schema([{"_id": 1, "a": {"x": 1}}], Inference())
    out = to_batch(
        [
            {"_id": 1, "a": {"x": 1}},
            {"_id": 2, "a": {"x": 2}, "late": True},
            {"_id": 3, "a": {"x": 3, "y": 4}},
        ],
        schema,
    )
    assert out.batch.column("_id").to_pylist() == [1]
    reasons = {d["_id"]: r for d, r in out.rejected}
    assert reasons[2] == "fields late are not in the schema inferred from the sample"
    assert reasons[3] == "a: fields y are not in the inferred schema"


def test_parse_type_names_the_choices() -> None:
    assert parse_type("timestamptz") == LogicalType("timestamp", unit="us", tz="UTC")
    with pytest.raises(ValueError, match="use one of: boolean, int32"):
        parse_type("datetime")


def test_conversion_goes_slice_by_slice_not_document_by_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The plain path is one struct conversion per slice of documents (ObjectIds in one
    # pass of their own): nothing is rebuilt value by value (the benchmark measures the
    # speed; this pins the path).
    calls: list[int] = []
    original = pa.array

    def counting(values: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(values) if isinstance(values, list) else -1)
        return original(values, *args, **kwargs)

    documents = [{"_id": bson.ObjectId(), "n": i, "s": str(i)} for i in range(1000)]
    schema = infer_schema(documents, Inference())
    monkeypatch.setattr(pa, "array", counting)
    out = to_batch(documents, schema)
    monkeypatch.undo()
    assert [n for n in calls if n > 0] == [SLICE, 1000 - SLICE]
    assert out.batch.column("_id").to_pylist() == [str(d["_id"]) for d in documents]
    assert out.batch.column("n").to_pylist() == list(range(1000))


def nested(i: int) -> dict[str, Any]:
    return {
        "_id": bson.ObjectId.from_datetime(WHEN + dt.timedelta(seconds=i)),
        "customer": {"name": f"c{i}", "address": {"city": "Köln", "zip": f"{i:05d}"}},
        "items": [{"sku": f"s{k}", "qty": k, "price": k * 0.5} for k in range(i % 3)],
        "tags": ["a", "b"][: i % 3],
        "at": WHEN + dt.timedelta(milliseconds=i),
        "n": i,
        "ref": bson.ObjectId.from_datetime(WHEN),
    }


def test_documents_that_do_not_fit_are_found_in_any_slice_and_the_rest_is_kept() -> None:
    documents = [nested(i) for i in range(3 * SLICE)]
    schema = infer_schema(documents[:100], Inference())
    documents[SLICE + 7]["items"] = [{"sku": "x", "qty": 1, "price": 1.0, "colour": "red"}]
    documents[SLICE + 9]["customer"]["address"]["floor"] = 3
    documents[2 * SLICE + 1]["n"] = "not a number"
    documents[2 * SLICE + 2]["late"] = True

    out = to_batch(documents, schema)

    reasons = {d["n"] if isinstance(d["n"], int) else d["_id"]: r for d, r in out.rejected}
    assert reasons == {
        SLICE + 7: "items[]: fields colour are not in the inferred schema",
        SLICE + 9: "customer.address: fields floor are not in the inferred schema",
        documents[2 * SLICE + 1]["_id"]: 'n: "not a number" (string) is not int64',
        2 * SLICE + 2: "fields late are not in the schema inferred from the sample",
    }
    kept = [
        i for i in range(3 * SLICE) if i not in (SLICE + 7, SLICE + 9, 2 * SLICE + 1, 2 * SLICE + 2)
    ]
    assert out.batch.column("n").to_pylist() == kept
    rows = out.batch.to_pylist()
    assert rows[0]["_id"] == str(documents[0]["_id"])
    assert rows[0]["ref"] == str(documents[0]["ref"])  # ObjectIds in a string column too
    assert rows[5]["customer"] == {"address": {"city": "Köln", "zip": "00005"}, "name": "c5"}
    assert rows[5]["items"] == [
        {"price": 0.0, "qty": 0, "sku": "s0"},
        {"price": 0.5, "qty": 1, "sku": "s1"},
    ]
    assert rows[5]["at"] == WHEN + dt.timedelta(milliseconds=5)


def test_the_slice_path_and_the_column_path_give_the_same_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents = [nested(i) for i in range(2 * SLICE + 3)]
    for i in range(0, len(documents), 50):
        documents[i]["customer"] = None  # NULL structs and missing fields on both paths
        del documents[i + 1]["tags"]
    schema = infer_schema(documents, Inference())
    to_batch(documents[:10], schema)  # learns that `ref` holds ObjectIds
    assert mongodb._plan(schema).slow == {"_id", "ref"}
    slow_slices: list[int] = []
    original = mongodb._Plan.by_column

    def counting(plan: Any, part: list[dict[str, Any]]) -> Any:
        slow_slices.append(len(part))
        return original(plan, part)

    monkeypatch.setattr(mongodb._Plan, "by_column", counting)
    fast = to_batch(documents, schema).batch
    assert slow_slices == []
    target = schema.to_arrow()
    by_column = pa.RecordBatch.from_arrays(
        [
            column_array([d.get(c.name) for d in documents], c.type, f.type, c.name)[0]
            for c, f in zip(schema.columns, target, strict=True)
        ],
        schema=target,
    )
    assert fast.equals(by_column)


def test_an_objectid_cursor_window_is_pushed_down_as_objectids() -> None:
    from deltaflow.config.connections import MongoDBConnection
    from deltaflow.config.models import IncrementalSpec
    from deltaflow.config.sources import MongoSource
    from deltaflow.connectors.protocol import CursorWindow, RunResources, encode
    from deltaflow.sync.incremental import decode

    start = decode("65A1B2C3D4E5F60718293A4B", "objectid")
    assert start == "65a1b2c3d4e5f60718293a4b"
    assert encode(start) == start
    with pytest.raises(Exception, match="not an objectid cursor value"):
        decode("65a1", "objectid")
    with pytest.raises(ValueError, match="an objectid cursor takes no lookback"):
        IncrementalSpec(cursor="_id", cursor_type="objectid", lookback="5m")

    conn = MongoDBConnection.model_validate(
        {"type": "mongodb", "uri": "mongodb://127.0.0.1:1", "database": "d"}
    )
    spec = MongoSource.model_validate(
        {"connection": "m", "collection": "c", "filter": {"status": "paid"}}
    )
    source = mongodb.MongoDBSource(conn, spec, RunResources(Path("."), "r"), 1000, 1)
    source.restrict(CursorWindow("_id", "objectid", start, None, "UTC"))
    assert source._filter() == {
        "$and": [
            {"status": "paid"},
            {"$or": [{"_id": {"$gte": bson.ObjectId(start)}}, {"_id": None}]},
        ]
    }


def test_an_objectid_cursor_follows_the_largest_id_in_the_stream() -> None:
    from deltaflow.config.models import IncrementalSpec
    from deltaflow.sync.incremental import CursorFilter, Plan

    spec = IncrementalSpec(cursor="_id", cursor_type="objectid")
    ids = [str(bson.ObjectId.from_datetime(WHEN + dt.timedelta(seconds=s))) for s in (3, 1, 2)]
    plan = Plan("incremental", ids[1], None, "test")
    cursor = CursorFilter(spec, plan, ("_id",), dedupe_boundary=False)
    kept = cursor.apply(pa.record_batch({"_id": pa.array(ids)}))
    assert kept.column(0).to_pylist() == ids  # all at or after the start
    state = cursor.next_state()
    assert state is not None
    assert state.watermark == ids[0]  # the newest ObjectId


def test_dates_decoded_without_a_timezone_are_the_same_utc_instants() -> None:
    # The source's client decodes BSON dates as naive datetimes (they are UTC instants).
    naive = WHEN.replace(tzinfo=None)
    documents = [{"_id": 1, "at": naive, "when": naive}]
    schema = infer_schema(documents, Inference(declared={"when": LogicalType("string")}))
    (row,) = to_batch(documents, schema).batch.to_pylist()
    assert row["at"] == WHEN
    assert row["when"] == "2024-01-02T03:04:05.678000+00:00"


def test_garbage_collection_is_held_off_only_while_a_batch_is_converted() -> None:
    import gc

    seen: list[bool] = []
    schema = infer_schema([{"_id": 1}], Inference())
    with mongodb.gc_paused():
        seen.append(gc.isenabled())
    seen.append(gc.isenabled())
    to_batch([{"_id": 1}], schema)
    seen.append(gc.isenabled())
    gc.disable()
    try:
        with mongodb.gc_paused():
            pass
        seen.append(gc.isenabled())  # a caller's own pause is kept
    finally:
        gc.enable()
    assert seen == [False, True, True, False]


def test_unknown_fields_inside_lists_of_lists_are_quarantined() -> None:
    documents = [{"_id": i, "grid": [[{"x": i}], [{"x": -i}]]} for i in range(3)]
    schema = infer_schema(documents, Inference())
    documents[1]["grid"][1][0]["y"] = 5

    out = to_batch(documents, schema)

    assert out.batch.column("_id").to_pylist() == [0, 2]
    ((document, reason),) = out.rejected
    assert document["_id"] == 1
    assert reason == "grid[][]: fields y are not in the inferred schema"


def test_readers_in_several_threads_pause_garbage_collection_together() -> None:
    import gc
    import threading

    entered, release_first, first_left = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with mongodb.gc_paused():
            entered.set()
            release_first.wait(5)
        first_left.set()

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(5)
    with mongodb.gc_paused():
        release_first.set()
        first_left.wait(5)
        seen.append(gc.isenabled())  # the first reader left; this one still pauses
    thread.join(5)
    seen.append(gc.isenabled())
    assert seen == [False, True]
