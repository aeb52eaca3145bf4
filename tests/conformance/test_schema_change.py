"""destination.on_schema_change: what ``prepare`` does when the source gains a column.

evolve and add_columns add it (rows loaded before hold NULL in it); fail refuses it with
SCHEMA_CHANGE_REJECTED and leaves the table as it was. An unchanged schema passes even
under fail; a column the source no longer has stays, and loads NULL."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.errors import SchemaError
from deltaflow.schema.types import TableSchema
from tests.conformance.conftest import MODELS, Target, arrow, can, destinations, reader

BEFORE = pa.schema([("id", pa.int64()), ("name", pa.string())])
AFTER = pa.schema([("id", pa.int64()), ("name", pa.string()), ("extra", pa.string())])
POLICIES = ("evolve", "add_columns", "fail")
#: destinations that do not honour a policy today, and what they do instead
GAPS: dict[tuple[str, str], str] = {}


def cases() -> list[object]:
    return [
        pytest.param(
            kind,
            policy,
            id=f"{kind}-{policy}",
            marks=[pytest.mark.xfail(strict=True, reason=GAPS[kind, policy])]
            if (kind, policy) in GAPS
            else [],
        )
        for kind in MODELS
        if can(kind, "tables")
        for policy in POLICIES
    ]


def loaded_table(target: Target) -> None:
    first = arrow([{"id": 1, "name": "a"}], BEFORE)
    target.prepared("people", first).load(reader(first), "append", ())


@pytest.mark.parametrize("target", destinations("tables"), indirect=True)
def test_an_unchanged_schema_is_accepted_even_under_fail(target: Target) -> None:
    loaded_table(target)
    destination = target.open("people", on_schema_change="fail")

    destination.prepare(TableSchema.from_arrow(BEFORE))

    assert target.columns("people") == ["id", "name"]


@pytest.mark.parametrize(("target", "policy"), cases(), indirect=["target"])
def test_a_new_source_column(target: Target, policy: str) -> None:
    loaded_table(target)
    destination = target.open("people", on_schema_change=policy)

    if policy == "fail":
        with pytest.raises(SchemaError) as info:
            destination.prepare(TableSchema.from_arrow(AFTER))
        assert info.value.code == "SCHEMA_CHANGE_REJECTED"
        assert "extra" in str(info.value)
        assert target.columns("people") == ["id", "name"]
        return

    destination.prepare(TableSchema.from_arrow(AFTER))
    second = arrow([{"id": 2, "name": "b", "extra": "x"}], AFTER)
    destination.load(reader(second), "append", ())

    assert target.columns("people") == ["id", "name", "extra"]
    assert target.sorted_rows("people") == [
        {"id": 1, "name": "a", "extra": None},
        {"id": 2, "name": "b", "extra": "x"},
    ]


@pytest.mark.parametrize("target", destinations("tables"), indirect=True)
def test_a_column_the_source_no_longer_has_is_kept_and_loads_null(target: Target) -> None:
    first = arrow([{"id": 1, "name": "a", "extra": "x"}], AFTER)
    target.prepared("people", first).load(reader(first), "append", ())
    destination = target.open("people")  # the default policy, evolve

    destination.prepare(TableSchema.from_arrow(BEFORE))
    destination.load(reader(arrow([{"id": 2, "name": "b"}], BEFORE)), "append", ())

    assert target.columns("people") == ["id", "name", "extra"]
    assert target.sorted_rows("people") == [
        {"id": 1, "name": "a", "extra": "x"},
        {"id": 2, "name": "b", "extra": None},
    ]
