"""A load is all or nothing: a source that fails mid-stream leaves the table as it was
(for replace: the old rows, never an empty or half-built table), and the source's own
error reaches the caller."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.config.connections import WriteMode
from deltaflow.errors import LoadError
from tests.conformance.conftest import (
    Boom,
    Target,
    arrow,
    destinations,
    failing_reader,
    reader,
    with_modes,
)

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("status", pa.string())])


def orders(ids: list[int], status: str) -> pa.Table:
    return arrow([{"id": i, "status": f"{status}-{i}"} for i in ids], SCHEMA)


@pytest.mark.parametrize(
    ("target", "mode"), with_modes("append", "replace", "merge"), indirect=["target"]
)
def test_a_source_failing_mid_load_leaves_the_table_as_it_was(
    target: Target, mode: WriteMode
) -> None:
    key = ("id",) if mode == "merge" else ()
    destination = target.prepared("orders", orders([1], "old"), key)
    destination.load(reader(orders([1, 2, 3], "old")), "append", ())
    before = target.sorted_rows("orders")

    with pytest.raises(Boom, match="source died midway"):
        destination.load(failing_reader(orders([2, 3, 4, 5, 6], "new"), 3), mode, key)

    assert target.sorted_rows("orders") == before
    assert target.columns("orders") == ["id", "status"]


@pytest.mark.parametrize(
    ("target", "mode"), with_modes("append", "replace", "merge"), indirect=["target"]
)
def test_a_destination_loads_again_after_a_failed_load(target: Target, mode: WriteMode) -> None:
    key = ("id",) if mode == "merge" else ()
    destination = target.prepared("orders", orders([1], "old"), key)
    with pytest.raises(Boom):
        destination.load(failing_reader(orders([1, 2, 3], "bad"), 1), mode, key)

    result = destination.load(reader(orders([7], "good")), mode, key)

    assert result.rows_loaded == 1
    assert target.rows("orders") == [{"id": 7, "status": "good-7"}]


@pytest.mark.parametrize("target", destinations("tables"), indirect=True)
def test_rows_that_do_not_fit_the_table_are_a_load_error_and_load_nothing(
    target: Target,
) -> None:
    destination = target.prepared("orders", orders([1], "old"))
    destination.load(reader(orders([1], "old")), "append", ())
    bad = pa.table({"id": ["2", "not a number"], "status": ["a", "b"]})

    with pytest.raises(LoadError) as info:
        destination.load(reader(bad, chunk=1), "append", ())

    assert info.value.code == "LOAD_FAILED"
    assert target.rows("orders") == [{"id": 1, "status": "old-1"}]
