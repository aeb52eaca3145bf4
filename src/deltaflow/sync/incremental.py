"""Incremental sync, exactly once: plan the window, filter the stream, keep the watermark.

The contract (the README's "Incremental sync" section says it in plain words):

- A run reads the window ``[start, end)``: ``start`` is the committed watermark (the
  largest cursor loaded so far), inclusive, so rows tied with it are never missed;
  ``end`` is now minus ``safety_lag`` (unbounded for integer cursors).
- Rows at exactly the watermark that were already loaded are not loaded again: a merge
  absorbs them by key; an append keeps the identities of the rows at the watermark (only
  those, so the state does not grow with history) and skips them.
- ``lookback`` widens the window to ``[watermark - lookback, end)`` for rows that commit
  late with an older cursor; it needs a merge.
- The new watermark is written in the same destination transaction as the rows, so a
  crash leaves either both or neither.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.protocol import encode
from deltaflow.errors import Code, ConfigError, DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.models import IncrementalSpec
    from deltaflow.config.options import SyncOptions

UTC = dt.UTC
_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


@dataclass(frozen=True)
class State:
    """What a destination keeps per stream: the watermark and the rows tied with it."""

    watermark: Any  # aware UTC datetime or int
    boundary: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Plan:
    mode: str  # incremental | adopted | full | fallback | full_refresh | backfill
    start: Any  # inclusive; None: from the beginning
    end: Any  # exclusive; None: no upper bound
    reason: str
    previous: State | None = None

    def describe(self, spec: IncrementalSpec) -> dict[str, Any]:
        """The plan as the run's details show it."""
        return {
            "mode": self.mode,
            "cursor": spec.cursor,
            "start": encode(self.start),
            "end": encode(self.end),
            "reason": self.reason,
        }


def decode(text: str | None, cursor_type: str, timezone: str = "UTC") -> Any:
    """A cursor value from config, the CLI or the state table; naive times are in
    ``timezone``. Names the value and the expected form when it does not parse."""
    if text is None:
        return None
    if cursor_type == "objectid":
        if not _OBJECT_ID.match(text.strip()):
            raise ConfigError(
                f"'{text}' is not an objectid cursor value",
                hint="write the 24 hex digits of an ObjectId, e.g. 65a1b2c3d4e5f60718293a4b",
            )
        return text.strip().lower()
    try:
        if cursor_type == "integer":
            return int(text)
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        form = "an integer" if cursor_type == "integer" else "an ISO 8601 time"
        raise ConfigError(
            f"'{text}' is not a {cursor_type} cursor value",
            hint=f"write {form}, e.g. "
            + ("1000" if cursor_type == "integer" else "2024-05-01T12:00:00+00:00"),
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return value.astimezone(UTC)


def plan_window(
    spec: IncrementalSpec,
    state: State | None,
    destination_max: Any,
    now: dt.datetime,
    options: SyncOptions,
) -> Plan:
    """Which rows this run reads, and why."""
    integer = spec.cursor_type != "timestamp"  # integers and ObjectIds: no clock
    end = decode(options.end, spec.cursor_type, spec.timezone)
    if end is None and not integer:
        end = now - dt.timedelta(seconds=spec.safety_lag_value())
    lookback: Any = (
        int(spec.lookback_value()) if integer else dt.timedelta(seconds=spec.lookback_value())
    )
    if options.full_refresh:
        return Plan("full_refresh", None, end, "--full-refresh: reading everything", state)
    if options.start is not None:
        start = decode(options.start, spec.cursor_type, spec.timezone)
        return Plan("backfill", start, end, f"--start {options.start}", state)
    if state is not None and state.watermark is not None:
        start = state.watermark - lookback if spec.lookback_value() else state.watermark
        why = "from the committed watermark"
        if spec.lookback_value():
            why += f", {spec.lookback} lookback"
        return Plan("incremental", start, end, why, state)
    if destination_max is not None:
        start = destination_max - lookback if spec.lookback_value() else destination_max
        return Plan(
            "adopted", start, end, f"no state yet: MAX({spec.cursor}) of the destination", None
        )
    if spec.on_empty == "fallback" and not integer:
        start = now - dt.timedelta(days=spec.fallback_days)
        return Plan("fallback", start, end, f"empty destination: last {spec.fallback_days} days")
    return Plan("full", None, end, "empty destination: loading everything")


@dataclass
class CursorFilter:
    """Applies the plan to the stream, batch by batch, and follows the watermark.

    Counts what it keeps out (``filtered``) so that a run can show
    ``read = loaded + filtered``; every NULL cursor is counted whatever the policy.
    """

    spec: IncrementalSpec
    plan: Plan
    identity: tuple[str, ...]  # columns that identify a row at the boundary; () = all
    dedupe_boundary: bool  # an append: skip rows already loaded at the watermark
    nulls: int = 0
    skipped_nulls: int = 0
    outside_window: int = 0
    already_loaded: int = 0
    high: Any = None
    high_rows: set[str] = field(default_factory=set)

    @property
    def filtered(self) -> int:
        return self.skipped_nulls + self.outside_window + self.already_loaded

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch without the rows the plan keeps out, counting each reason."""
        import pyarrow.compute as pc

        column = self._cursor(batch)
        null = pc.is_null(column)
        nulls = int(pc.sum(pc.cast(null, "int64")).as_py() or 0)
        self.nulls += nulls
        if nulls and self.spec.null_cursor == "fail":
            raise DataError(
                f"{nulls} rows have a NULL cursor ({self.spec.cursor})",
                hint="set incremental.null_cursor to 'skip' (count and leave them) or "
                "'load' (load them on every run, with write_mode merge)",
                code=Code.INCREMENTAL_NULL_CURSOR,
            )
        inside = pc.and_kleene(
            self._compare(pc.greater_equal, column, self.plan.start),
            self._compare(pc.less, column, self.plan.end),
        )
        outside = pc.sum(pc.invert(pc.fill_null(inside, True))).as_py() or 0
        self.outside_window += outside
        keep = pc.fill_null(inside, self.spec.null_cursor == "load")
        if nulls and self.spec.null_cursor == "skip":
            self.skipped_nulls += nulls
        if self.dedupe_boundary and self.plan.previous and self.plan.previous.boundary:
            keep = self._drop_loaded(batch, column, keep)
        if not pc.all(keep).as_py():
            batch, column = batch.filter(keep), column.filter(keep)
        self._follow(batch, column)
        return batch

    def _cursor(self, batch: pa.RecordBatch) -> pa.Array[Any]:
        """The cursor column, nanoseconds cut to microseconds (what Python times hold)."""
        import pyarrow as pa

        column = batch.column(self.spec.cursor)
        if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
            column = column.cast(pa.timestamp("us", column.type.tz), safe=False)
        return column

    def _compare(self, op: Any, column: pa.Array[Any], bound: Any) -> pa.Array[Any]:
        """``op(column, bound)``; all true when there is no bound."""
        import pyarrow as pa

        if bound is None:
            return pa.array([True] * len(column), pa.bool_())
        return op(column, self._scalar(bound, column.type))  # type: ignore[no-any-return]

    def _scalar(self, value: Any, dtype: pa.DataType) -> pa.Scalar[Any]:
        """A cursor value as a scalar of the column's type (naive times in the timezone)."""
        import pyarrow as pa

        if isinstance(value, dt.datetime):
            if pa.types.is_timestamp(dtype) and dtype.tz is None:
                value = value.astimezone(zoneinfo.ZoneInfo(self.spec.timezone)).replace(tzinfo=None)
            elif pa.types.is_date(dtype):
                return pa.scalar(value.date(), dtype)
        return pa.scalar(value, dtype)

    def _drop_loaded(
        self, batch: pa.RecordBatch, column: pa.Array[Any], keep: pa.Array[Any]
    ) -> pa.Array[Any]:
        """``keep`` without the rows at the watermark that the previous run loaded."""
        import pyarrow as pa
        import pyarrow.compute as pc

        previous = self.plan.previous
        assert previous is not None
        equal: Any = pc.equal(column, self._scalar(previous.watermark, column.type))
        at_mark: Any = pc.fill_null(equal, False)
        if not pc.any(at_mark).as_py():
            return keep
        flags = keep.to_pylist()
        for index in pc.indices_nonzero(at_mark).to_pylist():
            if flags[index] and self.identity_of(batch, index) in previous.boundary:
                flags[index] = False
                self.already_loaded += 1
        return pa.array(flags, pa.bool_())

    def _follow(self, batch: pa.RecordBatch, column: pa.Array[Any]) -> None:
        """Track the largest cursor kept and the identities of the rows that hold it."""
        import pyarrow.compute as pc

        top = pc.max(column)
        if not top.is_valid:
            return
        value = instant(top.as_py(), self.spec.timezone)
        if self.high is not None and value < self.high:
            return
        if self.high is None or value > self.high:
            self.high, self.high_rows = value, set()
        if not self.dedupe_boundary:
            return
        equal: Any = pc.equal(column, top)
        at_top: Any = pc.fill_null(equal, False)
        for index in pc.indices_nonzero(at_top).to_pylist():
            self.high_rows.add(self.identity_of(batch, index))

    def identity_of(self, batch: pa.RecordBatch, index: int) -> str:
        """A short hash of one row's identity columns (all columns when there are none)."""
        names = self.identity or tuple(batch.schema.names)
        row = {name: batch.column(name)[index].as_py() for name in names}
        text = json.dumps(row, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def next_state(self) -> State | None:
        """The state to commit with the rows: the watermark never moves back."""
        previous = self.plan.previous if self.plan.mode != "full_refresh" else None
        if self.high is None:
            return previous if previous is not None else None
        if previous is not None and previous.watermark is not None:
            if self.high < previous.watermark:
                return previous
            if self.high == previous.watermark:
                return State(self.high, previous.boundary | self.high_rows)
        return State(self.high, frozenset(self.high_rows))


def instant(value: Any, timezone: str) -> Any:
    """A cursor value read from a table as a watermark: aware UTC, or the integer."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
        return value.astimezone(UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), zoneinfo.ZoneInfo(timezone)).astimezone(UTC)
    return value
