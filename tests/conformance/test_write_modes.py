"""append, replace and merge, and what their LoadResult says, on every destination."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.connectors.protocol import LoadResult, StatefulDestination
from deltaflow.errors import LoadError
from tests.conformance.conftest import MODELS, Target, arrow, destinations, reader

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("status", pa.string())])


def orders(ids: list[int], status: str = "new") -> pa.Table:
    return arrow([{"id": i, "status": f"{status}-{i}"} for i in ids], SCHEMA)


def expected(*pairs: tuple[int, str]) -> list[dict[str, object]]:
    return [{"id": i, "status": s} for i, s in pairs]


@pytest.mark.parametrize("target", destinations(), indirect=True)
def test_a_destination_that_keeps_state_is_a_stateful_destination(target: Target) -> None:
    destination = target.open("orders")
    assert isinstance(destination, StatefulDestination) == MODELS[target.kind].keeps_state


@pytest.mark.parametrize("target", destinations("append"), indirect=True)
def test_append_adds_rows_and_counts_them(target: Target) -> None:
    destination = target.prepared("orders", orders([1]))

    first = destination.load(reader(orders([1, 2])), "append", ())
    second = destination.load(reader(orders([3, 4, 5])), "append", ())

    assert isinstance(second, LoadResult)
    assert (first.rows_loaded, first.table_rows) == (2, 2)
    assert (second.rows_loaded, second.table_rows) == (3, 5)
    assert second.rows_quarantined == 0
    assert target.sorted_rows("orders") == expected(
        (1, "new-1"), (2, "new-2"), (3, "new-3"), (4, "new-4"), (5, "new-5")
    )


@pytest.mark.parametrize("target", destinations("replace"), indirect=True)
def test_replace_leaves_only_the_new_rows(target: Target) -> None:
    destination = target.prepared("orders", orders([1]))
    destination.load(reader(orders([1, 2, 3])), "append", ())

    result = destination.load(reader(orders([7, 8], "upd")), "replace", ())

    assert (result.rows_loaded, result.table_rows) == (2, 2)
    assert target.sorted_rows("orders") == expected((7, "upd-7"), (8, "upd-8"))


@pytest.mark.parametrize("target", destinations("replace"), indirect=True)
def test_replace_with_no_rows_empties_the_table(target: Target) -> None:
    destination = target.prepared("orders", orders([1]))
    destination.load(reader(orders([1, 2])), "append", ())

    result = destination.load(reader(orders([])), "replace", ())

    assert (result.rows_loaded, result.table_rows) == (0, 0)
    assert target.rows("orders") == []


@pytest.mark.parametrize("target", destinations("merge"), indirect=True)
def test_merge_updates_existing_keys_and_inserts_new_ones(target: Target) -> None:
    destination = target.prepared("orders", orders([1]), ("id",))
    destination.load(reader(orders([1, 2])), "merge", ("id",))

    result = destination.load(reader(orders([2, 3], "upd")), "merge", ("id",))

    assert target.sorted_rows("orders") == expected((1, "new-1"), (2, "upd-2"), (3, "upd-3"))
    assert result.rows_loaded == 2


@pytest.mark.parametrize(
    "target",
    destinations(
        "merge",
        xfail={
            "bigquery": "table_rows is the table's num_rows metadata, which the BigQuery "
            "emulator does not lower on DELETE (the merge deletes, then inserts)"
        },
    ),
    indirect=True,
)
def test_merge_reports_the_rows_the_table_holds_after_it(target: Target) -> None:
    destination = target.prepared("orders", orders([1]), ("id",))
    destination.load(reader(orders([1, 2])), "merge", ("id",))

    result = destination.load(reader(orders([2, 3], "upd")), "merge", ("id",))

    assert result.table_rows == 3


@pytest.mark.parametrize(
    "target",
    destinations("merge"),
    indirect=True,
)
def test_merge_reports_inserted_and_updated_keys(target: Target) -> None:
    destination = target.prepared("orders", orders([1]), ("id",))
    destination.load(reader(orders([1, 2])), "merge", ("id",))

    result = destination.load(reader(orders([2, 3, 4], "upd")), "merge", ("id",))

    assert (result.details["inserted"], result.details["updated"]) == (2, 1)


@pytest.mark.parametrize("target", destinations("merge"), indirect=True)
def test_merge_keeps_the_last_row_of_a_key_repeated_in_one_load(target: Target) -> None:
    destination = target.prepared("orders", orders([1]), ("id",))
    data = arrow(
        [{"id": 1, "status": "a"}, {"id": 2, "status": "b"}, {"id": 1, "status": "c"}], SCHEMA
    )

    result = destination.load(reader(data, chunk=1), "merge", ("id",))

    assert (result.rows_loaded, result.table_rows) == (3, 2)
    assert target.sorted_rows("orders") == expected((1, "c"), (2, "b"))


@pytest.mark.parametrize("target", destinations("merge"), indirect=True)
def test_merge_on_a_composite_key(target: Target) -> None:
    schema = pa.schema([("id", pa.int64()), ("region", pa.string()), ("v", pa.int64())])
    first = arrow([{"id": 1, "region": "eu", "v": 1}, {"id": 1, "region": "us", "v": 2}], schema)
    destination = target.prepared("orders", first, ("id", "region"))
    destination.load(reader(first), "merge", ("id", "region"))

    second = arrow([{"id": 1, "region": "us", "v": 20}, {"id": 2, "region": "eu", "v": 3}], schema)
    result = destination.load(reader(second), "merge", ("id", "region"))

    got = sorted((r["id"], r["region"], r["v"]) for r in target.rows("orders"))
    assert got == [(1, "eu", 1), (1, "us", 20), (2, "eu", 3)]
    assert result.rows_loaded == 2


@pytest.mark.parametrize("target", destinations("merge"), indirect=True)
def test_merge_without_a_primary_key_is_refused(target: Target) -> None:
    destination = target.prepared("orders", orders([1]))
    destination.load(reader(orders([1])), "append", ())

    with pytest.raises(LoadError) as info:
        destination.load(reader(orders([1, 2], "upd")), "merge", ())

    assert info.value.code == "LOAD_NO_PRIMARY_KEY"
    assert target.rows("orders") == expected((1, "new-1"))


@pytest.mark.parametrize("target", destinations("merge"), indirect=True)
@pytest.mark.parametrize(
    ("key", "bad"),
    [(("id",), {"id": None, "region": "eu"}), (("id", "region"), {"id": 3, "region": None})],
    ids=["single", "composite"],
)
def test_merge_with_a_null_in_the_key_is_refused(
    target: Target, key: tuple[str, ...], bad: dict[str, object]
) -> None:
    schema = pa.schema([("id", pa.int64()), ("region", pa.string())])
    good = arrow([{"id": 1, "region": "eu"}], schema)
    destination = target.prepared("orders", good, key)
    destination.load(reader(good), "merge", key)

    with pytest.raises(LoadError) as info:
        destination.load(reader(arrow([{"id": 2, "region": "us"}, bad], schema)), "merge", key)

    assert info.value.code == "LOAD_NULL_PRIMARY_KEY"
    assert target.rows("orders") == [{"id": 1, "region": "eu"}]


@pytest.mark.parametrize(
    "target",
    destinations(
        "merge",
    ),
    indirect=True,
)
def test_merge_counts_keys_not_rows_when_the_table_repeats_a_key(target: Target) -> None:
    destination = target.prepared("orders", orders([1]))  # no key: appends may repeat one
    destination.load(reader(orders([1, 1, 2])), "append", ())

    result = destination.load(reader(orders([1, 3], "upd")), "merge", ("id",))

    assert target.sorted_rows("orders") == expected((1, "upd-1"), (2, "new-2"), (3, "upd-3"))
    assert (result.details["inserted"], result.details["updated"]) == (1, 1)
