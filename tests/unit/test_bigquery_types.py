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
