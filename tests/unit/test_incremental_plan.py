"""Window planning and the in-stream cursor filter, on plain values and Arrow batches."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from deltaflow.config.models import IncrementalSpec
from deltaflow.config.options import SyncOptions
from deltaflow.connectors.protocol import CursorWindow, bind_placeholders, encode
from deltaflow.errors import ConfigError, DataError
from deltaflow.sync.incremental import CursorFilter, Plan, State, decode, plan_window

NOW = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
MARK = dt.datetime(2026, 1, 9, 8, 30, 0, 123456, tzinfo=dt.UTC)


def spec(**kw: object) -> IncrementalSpec:
    return IncrementalSpec.model_validate({"cursor": "ts", **kw})


def test_state_wins_and_safety_lag_bounds_the_end() -> None:
    plan = plan_window(spec(safety_lag="30s"), State(MARK), None, NOW, SyncOptions())
    assert (plan.mode, plan.start, plan.end) == (
        "incremental",
        MARK,
        NOW - dt.timedelta(seconds=30),
    )


def test_lookback_moves_the_start_back() -> None:
    plan = plan_window(spec(lookback="15m"), State(MARK), None, NOW, SyncOptions())
    assert plan.start == MARK - dt.timedelta(minutes=15)
    assert "15m lookback" in plan.reason


def test_no_state_adopts_the_destination_max_then_falls_back() -> None:
    assert plan_window(spec(), None, MARK, NOW, SyncOptions()).mode == "adopted"
    full = plan_window(spec(), None, None, NOW, SyncOptions())
    assert (full.mode, full.start) == ("full", None)
    fallback = plan_window(
        spec(on_empty="fallback", fallback_days=3), None, None, NOW, SyncOptions()
    )
    assert (fallback.mode, fallback.start) == ("fallback", NOW - dt.timedelta(days=3))


def test_cli_overrides() -> None:
    refresh = plan_window(spec(), State(MARK), None, NOW, SyncOptions(full_refresh=True))
    assert (refresh.mode, refresh.start) == ("full_refresh", None)
    backfill = plan_window(
        spec(), State(MARK), None, NOW, SyncOptions(start="2026-01-01", end="2026-01-02T00:00Z")
    )
    assert backfill.mode == "backfill"
    assert backfill.start == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert backfill.end == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def test_integer_cursor_has_no_time_based_end() -> None:
    plan = plan_window(
        spec(cursor_type="integer", lookback=10), State(500), None, NOW, SyncOptions()
    )
    assert (plan.start, plan.end) == (490, None)


def test_values_keep_microseconds_and_naive_times_take_the_zone() -> None:
    assert encode(MARK) == "2026-01-09T08:30:00.123456+00:00"
    assert decode(encode(MARK), "timestamp") == MARK
    berlin = decode("2026-07-01T10:00:00", "timestamp", "Europe/Berlin")
    assert encode(berlin) == "2026-07-01T08:00:00.000000+00:00"
    with pytest.raises(ConfigError, match="'yesterday' is not a timestamp cursor value"):
        decode("yesterday", "timestamp")


def batch(ts: list[dt.datetime | None], ids: list[int], unit: str = "us") -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array(ids, pa.int64()), pa.array(ts, pa.timestamp(unit, "UTC"))], names=["id", "ts"]
    )


def test_filter_keeps_the_window_counts_nulls_and_follows_the_watermark() -> None:
    plan = Plan("incremental", MARK, MARK + dt.timedelta(hours=1), "", State(MARK))
    f = CursorFilter(spec(null_cursor="skip"), plan, ("id",), dedupe_boundary=False)
    b = batch(
        [MARK - dt.timedelta(seconds=1), MARK, None, MARK + dt.timedelta(hours=1)], [1, 2, 3, 4]
    )
    kept = f.apply(b)
    assert kept.column("id").to_pylist() == [2]
    assert (f.nulls, f.skipped_nulls, f.outside_window, f.filtered) == (1, 1, 2, 3)
    assert f.next_state() == State(MARK, frozenset())


def test_filter_skips_rows_already_loaded_at_the_watermark_and_keeps_new_ties() -> None:
    first = CursorFilter(spec(), Plan("full", None, None, ""), ("id",), dedupe_boundary=True)
    first.apply(batch([MARK, MARK, MARK - dt.timedelta(1)], [1, 2, 3]))
    state = first.next_state()
    assert state is not None
    assert len(state.boundary) == 2  # only the rows at the watermark are remembered
    second = CursorFilter(spec(), Plan("incremental", MARK, None, "", state), ("id",), True)
    kept = second.apply(batch([MARK, MARK, MARK], [1, 2, 9]))
    assert kept.column("id").to_pylist() == [9]
    assert second.already_loaded == 2
    after = second.next_state()
    assert after is not None
    assert after.watermark == MARK
    assert len(after.boundary) == 3


def test_nanosecond_cursors_compare_at_microseconds() -> None:
    f = CursorFilter(spec(), Plan("incremental", MARK, None, "", State(MARK)), ("id",), False)
    ns = pa.array([pa.scalar(MARK, pa.timestamp("us", "UTC")).value * 1000 + 500], pa.int64())
    b = pa.record_batch([pa.array([1]), ns.cast(pa.timestamp("ns", "UTC"))], names=["id", "ts"])
    assert f.apply(b).num_rows == 1
    assert f.high == MARK


def test_null_cursor_fail_names_the_count_and_the_fix() -> None:
    f = CursorFilter(spec(), Plan("full", None, None, ""), ("id",), False)
    with pytest.raises(DataError, match="2 rows have a NULL cursor") as caught:
        f.apply(batch([None, None, MARK], [1, 2, 3]))
    assert caught.value.hint is not None
    assert "null_cursor" in caught.value.hint


def test_predicate_literals_follow_the_column_type() -> None:
    window = CursorWindow("ts", "timestamp", MARK, None, "Europe/Berlin")
    assert window.predicate('"ts"', "timestamp", "UTC") == (
        "((\"ts\" >= CAST('2026-01-09T08:30:00.123456+00:00' AS TIMESTAMP WITH TIME ZONE)) "
        'OR "ts" IS NULL)'
    )
    naive = window.predicate('"ts"', "timestamp", None)
    assert "CAST('2026-01-09T09:30:00.123456' AS TIMESTAMP)" in naive


def test_placeholders_become_parameters() -> None:
    window = CursorWindow("ts", "timestamp", MARK, None, "UTC")
    sql, params = bind_placeholders(
        "SELECT * FROM t WHERE ts >= {start_timestamp} AND ts < {end_timestamp} "
        "AND ts2 >= {start_timestamp}",
        window.placeholder_values(),
    )
    assert sql == "SELECT * FROM t WHERE ts >= $1 AND ts < $2 AND ts2 >= $1"
    assert params == [MARK, dt.datetime(9999, 12, 31, tzinfo=dt.UTC)]
