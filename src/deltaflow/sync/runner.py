"""Run one sync step: discover, prepare the destination, stream splits into the load."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from deltaflow import connectors
from deltaflow.connectors.base import StatefulDestination, StateRecord
from deltaflow.engine.local import read_splits
from deltaflow.errors import ConfigError, LoadError, SchemaError, did_you_mean
from deltaflow.faults import crash_point
from deltaflow.sync.incremental import (
    CursorFilter,
    CursorWindow,
    Plan,
    State,
    decode,
    encode,
    instant,
    plan_window,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode
    from deltaflow.config.models import IncrementalSpec, Pipeline, SyncStep
    from deltaflow.connectors.base import Destination, RunResources, Source
    from deltaflow.schema.types import TableSchema

log = logging.getLogger("deltaflow.sync")


class Observer(Protocol):
    """Told about a stream's progress (the CLI draws progress bars from it)."""

    def stream_started(self, stream: str, total_rows: int | None) -> None: ...
    def rows_read(self, stream: str, rows: int) -> None: ...
    def stream_finished(self, stream: str) -> None: ...


class NullObserver:
    def stream_started(self, stream: str, total_rows: int | None) -> None:
        pass

    def rows_read(self, stream: str, rows: int) -> None:
        pass

    def stream_finished(self, stream: str) -> None:
        pass


@dataclass
class SyncOutcome:
    stream: str
    destination: str
    write_mode: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_filtered: int = 0
    table_rows: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def default_parallelism() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_sync(
    step: SyncStep, pipeline: Pipeline, resources: RunResources, observer: Observer | None = None
) -> SyncOutcome:
    import pyarrow as pa

    observer = observer or NullObserver()
    source_conn = pipeline.connections[step.source.connection]
    dest_conn = pipeline.connections[step.destination.connection]
    parallelism = step.parallelism or default_parallelism()
    source = connectors.open_source(
        source_conn, step.source, resources, step.batch_size, parallelism
    )
    destination = connectors.open_destination(dest_conn, step.destination, resources)
    stream = source.name or step.step_id
    write_mode = step.destination.write_mode
    incremental = None
    if step.incremental is not None:
        incremental = Incremental.start(step, pipeline, source, destination, stream, resources)
        write_mode = incremental.write_mode
    schema = source.discover()
    primary_key = tuple(step.destination.primary_key) or schema.primary_key
    _check_keys(primary_key, schema.names, stream)
    if incremental is not None:
        incremental.check_cursor(schema)
    destination.prepare(schema)
    splits = source.splits()
    outcome = SyncOutcome(stream, destination.name, write_mode)

    def count(batch: pa.RecordBatch) -> None:
        outcome.rows_read += batch.num_rows
        observer.rows_read(stream, batch.num_rows)

    known = [s.rows for s in splits]
    observer.stream_started(stream, None if None in known else sum(known))  # type: ignore[arg-type]
    batches = read_splits(
        source, splits, parallelism, count, ordered=_order_matters(step, schema, primary_key)
    )
    target = schema.to_arrow()
    stream_batches = _with_crash_points(_conform(b, target) for b in batches)
    state = None
    if incremental is not None:
        stream_batches = incremental.filter(stream_batches, primary_key, write_mode)
        state = incremental.next_state
    try:
        reader = pa.RecordBatchReader.from_batches(target, stream_batches)
        result = destination.load(reader, write_mode, primary_key, state)
    finally:
        batches.close()
        observer.stream_finished(stream)
    outcome.rows_loaded, outcome.table_rows = result.rows_loaded, result.table_rows
    outcome.details = dict(result.details)
    if incremental is not None:
        outcome.rows_filtered = incremental.filtered
        outcome.details["incremental"] = incremental.summary()
    _reconcile(outcome)
    return outcome


@dataclass
class Incremental:
    """One step's incremental run: the plan, the filter on the stream, the next state."""

    spec: IncrementalSpec
    plan: Plan
    key: str
    run_id: str
    write_mode: WriteMode
    cursor_filter: CursorFilter | None = None

    @classmethod
    def start(
        cls,
        step: SyncStep,
        pipeline: Pipeline,
        source: Source,
        destination: Destination,
        stream: str,
        resources: RunResources,
    ) -> Incremental:
        assert step.incremental is not None
        options = resources.options
        spec = step.incremental
        if options.cursor:
            spec = spec.model_copy(update={"cursor": options.cursor})
        if not isinstance(destination, StatefulDestination):
            raise ConfigError(
                f"destination {destination.name} cannot keep incremental state",
                hint="load incrementally into DuckDB or PostgreSQL",
            )
        key = state_key(pipeline.pipeline_id, step.step_id, stream)
        found = [r for r in destination.read_states(key) if r.key == key]
        state = None
        if found and found[0].watermark is not None and not options.full_refresh:
            watermark = decode(found[0].watermark, spec.cursor_type)
            state = State(watermark, frozenset(found[0].boundary))
        top = None
        if state is None and not options.full_refresh:
            top = instant(destination.cursor_max(spec.cursor), spec.timezone)
        plan = plan_window(spec, state, top, dt.datetime.now(dt.UTC), options)
        log.info(
            "%s: %s sync of %s >= %s and < %s (%s)",
            stream,
            plan.mode,
            spec.cursor,
            encode(plan.start) or "the beginning",
            encode(plan.end) or "no end",
            plan.reason,
        )
        restrict = getattr(source, "restrict", None)
        if restrict is not None:
            restrict(
                CursorWindow(spec.cursor, spec.cursor_type, plan.start, plan.end, spec.timezone)
            )
        mode: WriteMode = "replace" if options.full_refresh else step.destination.write_mode
        return cls(spec, plan, key, resources.run_id, mode)

    def check_cursor(self, schema: TableSchema) -> None:
        column = schema.column(self.spec.cursor)
        if column is None:
            raise SchemaError(
                f"cursor column '{self.spec.cursor}' is not in the stream."
                f"{did_you_mean(self.spec.cursor, schema.names)}",
                hint=f"columns: {', '.join(schema.names)}",
            )
        wanted = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
        fits = (
            column.type.kind in wanted
            if self.spec.cursor_type == "integer"
            else column.type.kind in ("timestamp", "date")
        )
        if not fits:
            raise SchemaError(
                f"cursor column '{self.spec.cursor}' is {column.type}, not a "
                f"{self.spec.cursor_type}",
                hint="set incremental.cursor_type to match the column (timestamp or integer)",
            )

    def filter(
        self,
        batches: Iterator[pa.RecordBatch],
        primary_key: tuple[str, ...],
        write_mode: WriteMode,
    ) -> Iterator[pa.RecordBatch]:
        self.cursor_filter = CursorFilter(
            self.spec, self.plan, primary_key, dedupe_boundary=write_mode == "append"
        )
        for batch in batches:
            kept = self.cursor_filter.apply(batch)
            if kept.num_rows:
                yield kept

    @property
    def filtered(self) -> int:
        return self.cursor_filter.filtered if self.cursor_filter else 0

    def next_state(self) -> StateRecord | None:
        assert self.cursor_filter is not None
        state = self.cursor_filter.next_state()
        if state is None:
            return None
        return StateRecord(
            self.key, self.spec.cursor, encode(state.watermark), tuple(state.boundary), self.run_id
        )

    def summary(self) -> dict[str, Any]:
        out = self.plan.describe(self.spec)
        f = self.cursor_filter
        if f is not None:
            state = f.next_state()
            out |= {
                "null_cursor_rows": f.nulls,
                "skipped_null_cursor": f.skipped_nulls,
                "outside_window": f.outside_window,
                "already_loaded": f.already_loaded,
                "watermark": encode(state.watermark) if state else None,
            }
        return out


def state_key(pipeline_id: str, step_id: str, stream: str) -> str:
    return f"{pipeline_id}/{step_id}/{stream}"


def _with_crash_points(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The stream, with the harness's crash points after the first batch is read, and
    once the destination has taken it (see ``deltaflow.faults``)."""
    first = True
    for batch in batches:
        if first:
            crash_point("mid_read")
        yield batch
        if first:
            crash_point("mid_load")
            first = False


def _conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    return batch if batch.schema.equals(target) else batch.cast(target)


def _order_matters(step: SyncStep, schema: TableSchema, primary_key: tuple[str, ...]) -> bool:
    """A merge keeps the last row of a key, so rows must arrive in the same order on every
    run, unless the source's own primary key already makes every merge key unique."""
    if step.destination.write_mode != "merge":
        return False
    unique = bool(schema.primary_key) and set(schema.primary_key) <= set(primary_key)
    return not unique


def _check_keys(primary_key: tuple[str, ...], columns: list[str], stream: str) -> None:
    missing = [k for k in primary_key if k not in columns]
    if missing:
        raise SchemaError(
            f"primary key columns {missing} are not in stream '{stream}'",
            hint=f"choose primary_key from: {', '.join(columns)}",
        )


def _reconcile(outcome: SyncOutcome) -> None:
    """Every row read is loaded or filtered (with a reason): a difference means rows were
    lost, and fails the step."""
    if outcome.rows_read != outcome.rows_loaded + outcome.rows_filtered:
        raise LoadError(
            f"stream '{outcome.stream}': read {outcome.rows_read} rows but loaded "
            f"{outcome.rows_loaded} and filtered {outcome.rows_filtered}",
            hint="the destination may hold a partial load: rerun the step with write_mode "
            "replace or merge, and report this as a bug",
            code="LOAD_RECONCILIATION_FAILED",
        )
