"""The type table in the README is the one the code uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from deltaflow.schema.mappings import (
    MONGODB_LOGICAL,
    bigquery_type,
    duckdb_type,
    postgres_type,
)
from deltaflow.schema.types import Column, LogicalType

README = Path(__file__).resolve().parents[2] / "README.md"

ROWS: list[tuple[str, LogicalType]] = [
    ("boolean", LogicalType("boolean")),
    ("int16", LogicalType("int16")),
    ("int32", LogicalType("int32")),
    ("int64", LogicalType("int64")),
    ("uint64", LogicalType("uint64")),
    ("float32", LogicalType("float32")),
    ("float64", LogicalType("float64")),
    ("decimal(12,2)", LogicalType("decimal", precision=12, scale=2)),
    ("decimal(40,10)", LogicalType("decimal", precision=40, scale=10)),
    ("decimal, unconstrained", LogicalType("decimal")),
    ("string", LogicalType("string")),
    ("binary", LogicalType("binary")),
    ("date", LogicalType("date")),
    ("time", LogicalType("time", unit="us")),
    ("timestamp, naive", LogicalType("timestamp", unit="us")),
    ("timestamp, with zone", LogicalType("timestamp", unit="us", tz="UTC")),
    ("interval", LogicalType("interval")),
    ("json", LogicalType("json")),
    ("uuid", LogicalType("uuid")),
    ("list of int64", LogicalType("list", item=LogicalType("int64"))),
    ("struct", LogicalType("struct", fields=(Column("a", LogicalType("int64")),))),
]


def row(name: str, logical: LogicalType) -> str:
    postgres = postgres_type(logical)
    if logical.kind == "list":
        postgres = f"jsonb (`nested: array`: {postgres})"
    return (
        f"| {name} | ``{duckdb_type(logical)}`` | ``{postgres}`` | ``{bigquery_type(logical)}`` |"
    )


def mongodb_row(bson: str) -> str:
    logical = MONGODB_LOGICAL[bson]
    return f"| `{bson}` | ``{logical}`` | ``{bigquery_type(logical)}`` |"


@pytest.mark.parametrize(("name", "logical"), ROWS, ids=[n for n, _ in ROWS])
def test_readme_type_table_row(name: str, logical: LogicalType) -> None:
    assert row(name, logical) in README.read_text(encoding="utf-8")


@pytest.mark.parametrize("bson", sorted(MONGODB_LOGICAL))
def test_readme_mongodb_table_row(bson: str) -> None:
    assert mongodb_row(bson) in README.read_text(encoding="utf-8")


if __name__ == "__main__":  # prints the tables for the README
    print("| logical | DuckDB | PostgreSQL | BigQuery |\n| --- | --- | --- | --- |")
    print("\n".join(row(n, t) for n, t in ROWS))
    print("\n| BSON type | logical | BigQuery |\n| --- | --- | --- |")
    print("\n".join(mongodb_row(b) for b in MONGODB_LOGICAL))
