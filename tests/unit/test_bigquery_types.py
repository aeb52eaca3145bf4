"""The logical -> BigQuery column type table (BIGQUERY_TYPES)."""

from __future__ import annotations

import typing

import pytest

from deltaflow.schema.mappings import BIGQUERY_TYPES, bigquery_type, quote_backtick
from deltaflow.schema.types import Column, Kind, LogicalType

ITEM = LogicalType(
    "struct",
    fields=(
        Column("sku", LogicalType("string")),
        Column("price", LogicalType("decimal", precision=12, scale=2)),
    ),
)

BIGQUERY_GOLDEN: list[tuple[LogicalType, str]] = [
    (LogicalType("null"), "STRING"),
    (LogicalType("boolean"), "BOOL"),
    (LogicalType("int8"), "INT64"),
    (LogicalType("int16"), "INT64"),
    (LogicalType("int32"), "INT64"),
    (LogicalType("int64"), "INT64"),
    (LogicalType("uint8"), "INT64"),
    (LogicalType("uint16"), "INT64"),
    (LogicalType("uint32"), "INT64"),
    (LogicalType("uint64"), "NUMERIC(20, 0)"),  # beyond INT64
    (LogicalType("float32"), "FLOAT64"),
    (LogicalType("float64"), "FLOAT64"),
    (LogicalType("decimal", precision=12, scale=2), "NUMERIC(12, 2)"),
    (LogicalType("decimal", precision=38, scale=9), "NUMERIC(38, 9)"),  # 29 + 9: the edge
    (LogicalType("decimal", precision=38, scale=10), "BIGNUMERIC(38, 10)"),  # scale > 9
    (LogicalType("decimal", precision=30, scale=0), "BIGNUMERIC(30, 0)"),  # 30 digits > 29
    (LogicalType("decimal", precision=76, scale=38), "BIGNUMERIC(76, 38)"),
    (LogicalType("decimal", precision=77, scale=38), "STRING"),  # beyond BIGNUMERIC: exact text
    (LogicalType("decimal"), "BIGNUMERIC"),  # unconstrained
    (LogicalType("string"), "STRING"),
    (LogicalType("binary"), "BYTES"),
    (LogicalType("date"), "DATE"),
    (LogicalType("time", unit="us"), "TIME"),
    (LogicalType("timestamp", unit="us", tz="UTC"), "TIMESTAMP"),
    (LogicalType("timestamp", unit="us"), "DATETIME"),
    (LogicalType("interval"), "INTERVAL"),
    (LogicalType("json"), "JSON"),
    (LogicalType("uuid"), "STRING"),
    (LogicalType("list", item=LogicalType("int64")), "ARRAY<INT64>"),
    (LogicalType("list", item=LogicalType("list", item=LogicalType("int64"))), "JSON"),
    (LogicalType("list", item=ITEM), "ARRAY<STRUCT<`sku` STRING, `price` NUMERIC(12, 2)>>"),
    (
        LogicalType("struct", fields=(Column("a`b", LogicalType("date")),)),
        "STRUCT<`a\\`b` DATE>",
    ),
]


@pytest.mark.parametrize(("logical", "expected"), BIGQUERY_GOLDEN, ids=str)
def test_bigquery_type_golden(logical: LogicalType, expected: str) -> None:
    assert bigquery_type(logical) == expected


def test_bigquery_golden_list_covers_every_kind() -> None:
    kinds = set(typing.get_args(Kind))
    assert {logical.kind for logical, _ in BIGQUERY_GOLDEN} == kinds
    assert set(BIGQUERY_TYPES) == kinds


@pytest.mark.parametrize(
    ("identifier", "quoted"),
    [("plain", "`plain`"), ("a`b", "`a\\`b`"), ("back\\slash", "`back\\\\slash`")],
)
def test_quote_backtick_escapes_what_would_end_the_name(identifier: str, quoted: str) -> None:
    assert quote_backtick(identifier) == quoted


def _field(name: str, kind: str, mode: str = "NULLABLE", **kw: object) -> object:
    from google.cloud.bigquery import SchemaField

    return SchemaField(name, kind, mode=mode, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (_field("a", "INTEGER"), LogicalType("int64")),
        (_field("a", "NUMERIC"), LogicalType("decimal", precision=38, scale=9)),
        (
            _field("a", "NUMERIC", precision=12, scale=2),
            LogicalType("decimal", precision=12, scale=2),
        ),
        (_field("a", "BIGNUMERIC"), LogicalType("decimal", precision=76, scale=38)),
        (_field("a", "DATETIME"), LogicalType("timestamp", unit="us")),
        (_field("a", "TIMESTAMP"), LogicalType("timestamp", unit="us", tz="UTC")),
        (_field("a", "GEOGRAPHY"), LogicalType("string")),
        (_field("a", "STRING", "REPEATED"), LogicalType("list", item=LogicalType("string"))),
        (
            _field("a", "RECORD", fields=(_field("b", "DATE", "REQUIRED"),)),
            LogicalType("struct", fields=(Column("b", LogicalType("date"), False),)),
        ),
    ],
    ids=str,
)
def test_bigquery_logical(field: object, expected: LogicalType) -> None:
    from deltaflow.schema.mappings import bigquery_logical

    assert bigquery_logical(field) == expected


def test_bigquery_names_makes_names_valid_and_unique() -> None:
    from deltaflow.connectors.bigquery import bigquery_names

    names = ["id", "order date", "1st", "a-b", "A_B", "_PARTITIONTIME", "x" * 301, "Köln"]
    assert bigquery_names(names) == {
        "id": "id",
        "order date": "order_date",
        "1st": "c_1st",
        "a-b": "a_b",
        "A_B": "A_B_2",  # BigQuery compares names without case
        "_PARTITIONTIME": "c__PARTITIONTIME",  # a reserved prefix
        "x" * 301: "x" * 300,
        "Köln": "K_ln",
    }


def _check(columns: dict[str, tuple[object, LogicalType]]) -> tuple[object, list[str | None]]:
    import pyarrow as pa

    from deltaflow.connectors.bigquery import bigquery_values
    from deltaflow.schema.types import TableSchema

    batch = pa.record_batch({name: array for name, (array, _) in columns.items()})
    schema = TableSchema(tuple(Column(n, t) for n, (_, t) in columns.items()))
    held, reasons = bigquery_values(batch, schema)
    return held, [] if reasons is None else reasons.to_pylist()


def test_values_bigquery_cannot_hold_get_a_reason_naming_column_and_value() -> None:
    import datetime as dt

    import pyarrow as pa

    day = pa.array([0, 2_932_897, None, -719_163], pa.date32())  # 1970, 10000, NULL, year 0
    at = pa.array([0, 253_402_300_800_000_000, None, 1], pa.timestamp("us", tz="UTC"))
    items = pa.array([[1], [2, None], None, []], pa.list_(pa.int64()))
    _, reasons = _check(
        {
            "day": (day, LogicalType("date")),
            "at": (at, LogicalType("timestamp", unit="us", tz="UTC")),
            "items": (items, LogicalType("list", item=LogicalType("int64"))),
        }
    )
    assert reasons[0] is None
    assert reasons[1] == "day: 10000-01-01 is outside the years 1 to 9999 that BigQuery holds"
    assert reasons[2] is None  # NULLs and a NULL list are fine
    assert reasons[3] is not None
    assert reasons[3].startswith("day: ")
    # every row in range gives no reasons at all
    held, none = _check({"at": (at.slice(0, 1), LogicalType("timestamp", unit="us", tz="UTC"))})
    assert none == []
    assert held.column(0)[0].as_py() == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # type: ignore[attr-defined]


def test_a_decimal_of_undeclared_precision_becomes_bignumeric_by_the_documented_rules() -> None:
    import decimal

    import pyarrow as pa

    texts = ["1.5", "NaN", "1" + "0" * 38, "0." + "1" * 37 + "15", "-0." + "0" * 38 + "5", None]
    held, reasons = _check({"n": (pa.array(texts), LogicalType("decimal"))})
    values = held.column(0).to_pylist()  # type: ignore[attr-defined]
    assert held.column(0).type == pa.decimal256(76, 38)  # type: ignore[attr-defined]
    assert values[0] == decimal.Decimal("1.5")
    assert reasons[1] == "n: NaN is not a finite number, which BIGNUMERIC cannot hold"
    assert reasons[2] is not None
    assert "more than the 38 digits before the point" in reasons[2]
    assert values[3] == decimal.Decimal("0." + "1" * 37 + "2")  # rounded half away from zero
    assert values[4] == decimal.Decimal("-0." + "0" * 37 + "1")
    assert values[5] is None
    assert reasons[5] is None
    # exact values take the one vectorised cast and give no reasons
    _, none = _check({"n": (pa.array(["12.25", None]), LogicalType("decimal"))})
    assert none == []


def test_quarantine_records_keep_values_python_cannot_hold() -> None:
    import json

    import pyarrow as pa

    from deltaflow import quarantine

    rows = pa.table(
        {
            "id": [7],
            "day": pa.array([2_932_897], pa.date32()),
            "raw": pa.array([b"\x00\xff"]),
            "amount": pa.array(["1.50"]).cast(pa.decimal128(5, 2)),
        }
    )
    out = quarantine.records(
        rows, pa.array(["day: out of range"]), "BQ_VALUE_OUT_OF_RANGE", run_id="r1", stream="s"
    )
    assert out.schema == quarantine.schema()
    (record,) = out.column("record").to_pylist()
    assert json.loads(record) == {"id": 7, "day": "10000-01-01", "raw": "AP8=", "amount": "1.50"}
    assert out.column("reason_code").to_pylist() == ["BQ_VALUE_OUT_OF_RANGE"]
