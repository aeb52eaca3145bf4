"""Incremental state, kept next to the table by a StatefulDestination: committed in the
load's transaction, or not at all."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from deltaflow.connectors.protocol import StatefulDestination
from deltaflow.errors import LoadError
from tests.conformance.conftest import (
    Boom,
    Target,
    arrow,
    destinations,
    failing_reader,
    reader,
    state_record,
)

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("n", pa.int64())])
PREFIX = "pipe/step/"


def stateful(target: Target, primary_key: tuple[str, ...] = ()) -> StatefulDestination:
    destination = target.prepared("events", arrow([], SCHEMA), primary_key)
    assert isinstance(destination, StatefulDestination)
    return destination


def rows(*pairs: tuple[int, int | None]) -> pa.Table:
    return arrow([{"id": i, "n": n} for i, n in pairs], SCHEMA)


@pytest.mark.parametrize("target", destinations("state"), indirect=True)
def test_state_passed_to_a_load_is_committed_with_its_rows(target: Target) -> None:
    destination = stateful(target)
    records = [
        state_record(f"{PREFIX}a", "2024-03-01T12:00:00.000000+00:00", "1", "2"),
        state_record(f"{PREFIX}b", None),
    ]

    destination.load(reader(rows((1, 1))), "append", (), state=lambda: records)

    assert destination.read_states(PREFIX) == records
    assert destination.read_states("other/") == []
    assert target.rows("events") == [{"id": 1, "n": 1}]


@pytest.mark.parametrize("target", destinations("state"), indirect=True)
def test_a_failed_load_writes_no_state(target: Target) -> None:
    destination = stateful(target)
    kept = state_record(f"{PREFIX}a", "1")
    destination.write_state(kept)

    with pytest.raises(Boom):
        destination.load(
            failing_reader(rows((1, 1), (2, 2), (3, 3))),
            "append",
            (),
            state=lambda: [state_record(f"{PREFIX}a", "3"), state_record(f"{PREFIX}b", "3")],
        )

    assert destination.read_states(PREFIX) == [kept]


@pytest.mark.parametrize("target", destinations("state", "merge"), indirect=True)
def test_a_refused_merge_writes_no_state(target: Target) -> None:
    destination = stateful(target, ("id",))
    bad = arrow([{"id": 1, "n": 1}, {"id": None, "n": 2}], SCHEMA)

    with pytest.raises(LoadError):
        destination.load(
            reader(bad), "merge", ("id",), state=lambda: [state_record(f"{PREFIX}a", "1")]
        )

    assert destination.read_states(PREFIX) == []


@pytest.mark.parametrize("target", destinations("state"), indirect=True)
def test_write_read_and_delete_states(target: Target) -> None:
    destination = stateful(target)
    assert destination.read_states(PREFIX) == []
    assert destination.delete_states(PREFIX) == 0

    destination.write_state(state_record(f"{PREFIX}a", "1"))
    destination.write_state(state_record(f"{PREFIX}a", "2", "7"))  # replaces the first
    destination.write_state(state_record(f"{PREFIX}b", "5"))
    destination.write_state(state_record("pipe/other/a", "9"))

    assert destination.read_states(PREFIX) == [
        state_record(f"{PREFIX}a", "2", "7"),
        state_record(f"{PREFIX}b", "5"),
    ]
    assert destination.delete_states(PREFIX) == 2
    assert destination.read_states(PREFIX) == []
    assert destination.read_states("pipe/") == [state_record("pipe/other/a", "9")]


@pytest.mark.parametrize("target", destinations("state"), indirect=True)
def test_cursor_max_and_rows_at_max(target: Target) -> None:
    missing = target.open("events")
    assert isinstance(missing, StatefulDestination)
    assert missing.cursor_max("n") is None
    assert missing.rows_at_max("n", ["id"]) is None

    destination = stateful(target)
    assert destination.cursor_max("n") is None  # empty
    destination.load(reader(rows((1, 5), (2, 9), (3, 9), (4, None))), "append", ())

    assert destination.cursor_max("n") == 9
    assert destination.cursor_max("no_such_column") is None
    at_max = destination.rows_at_max("n", ["id"])
    assert at_max is not None
    assert sorted(at_max.column("id").to_pylist()) == [2, 3]
    assert destination.rows_at_max("n", ["id", "no_such_column"]) is None


@pytest.mark.parametrize("target", destinations("state"), indirect=True)
def test_cursor_max_of_a_timestamp_keeps_microseconds_and_zone(target: Target) -> None:
    schema = pa.schema([("id", pa.int64()), ("at", pa.timestamp("us", tz="UTC"))])
    t0 = dt.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    data = arrow([{"id": 1, "at": t0}, {"id": 2, "at": t0 - dt.timedelta(microseconds=1)}], schema)
    destination = target.prepared("events", data)
    assert isinstance(destination, StatefulDestination)
    destination.load(reader(data), "append", ())

    assert destination.cursor_max("at") == t0
