"""Table and column names with spaces, quotes, dots, upper case and SQL keywords: kept
exactly, or (BigQuery, whose column names are ASCII letters, digits and underscores) made
valid the documented way and the renaming reported in ``details["renamed_columns"]``.
Either way no name is ever read as SQL."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.config.connections import WriteMode
from tests.conformance.conftest import MODELS, Target, arrow, can, reader

KEY = "Row ID"
SCHEMA = pa.schema(
    [(KEY, pa.int64()), ('say "hi"', pa.string()), ("a.b", pa.string()), ("select", pa.int64())]
)
#: how BigQuery makes these column names valid (see BigQueryDestination.prepare)
MADE_VALID = {KEY: "Row_ID", 'say "hi"': "say__hi_", "a.b": "a_b"}
TABLES = ["Order Items", 'we"ird; DROP TABLE x; --', "select"]
#: table names a destination cannot hold (BigQuery table names take no quotes)
INVALID_TABLES = {"bigquery": {'we"ird; DROP TABLE x; --'}}


def cases() -> list[object]:
    return [
        pytest.param(kind, table, id=f"{kind}-{table}")
        for kind in MODELS
        for table in TABLES
        if table not in INVALID_TABLES.get(kind, set())
    ]


def data(*rows: tuple[int, str, int]) -> pa.Table:
    names = SCHEMA.names
    return arrow([dict(zip(names, (i, s, s.upper(), n), strict=True)) for i, s, n in rows], SCHEMA)


@pytest.mark.parametrize(("target", "table"), cases(), indirect=["target"])
def test_names_round_trip(target: Target, table: str) -> None:
    first = data((1, "p", 10), (2, "q", 20))
    destination = target.prepared(table, first, (KEY,))
    destination.load(reader(first), "append", ())
    mode: WriteMode = "merge" if can(target.kind, "merge") else "replace"

    result = destination.load(reader(data((2, "Q", 21), (3, "r", 30))), mode, (KEY,))

    renamed = dict(result.details.get("renamed_columns", {}))
    assert renamed in ({}, MADE_VALID)
    names = [renamed.get(n, n) for n in SCHEMA.names]
    assert target.columns(table) == names
    kept = [(1, "p", 10)] if mode == "merge" else []  # replace keeps none
    expected = data(*kept, (2, "Q", 21), (3, "r", 30))
    assert target.sorted_rows(table, names[0]) == expected.rename_columns(names).to_pylist()
