"""One stream's incremental run: its window planned from the stored state, the filter on
its batches, and the state to commit with the rows (keyed by :func:`state_key`)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.protocol import (
    CursorWindow,
    StatefulDestination,
    StateRecord,
    WindowedSource,
    encode,
)
from deltaflow.errors import ConfigError, SchemaError, did_you_mean
from deltaflow.sync.incremental import CursorFilter, Plan, State, decode, instant, plan_window

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode
    from deltaflow.config.models import IncrementalSpec, Pipeline, SyncStep
    from deltaflow.config.options import SyncOptions
    from deltaflow.connectors.protocol import Destination, RunResources, Source
    from deltaflow.schema.types import TableSchema

log = logging.getLogger("deltaflow.sync")

#: the Arrow kinds a cursor column may have, per cursor type
_CURSOR_KINDS = {
    "integer": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    "timestamp": ("timestamp", "date"),
    "objectid": ("string",),
}


def state_key(pipeline_id: str, step_id: str, stream: str) -> str:
    """The key of one stream's state in its destination's state table."""
    return f"{pipeline_id}/{step_id}/{stream}"


@dataclass
class Incremental:
    """One step's incremental run: the plan, the filter on the stream, the next state."""

    spec: IncrementalSpec
    plan: Plan
    key: str
    run_id: str
    write_mode: WriteMode
    destination: StatefulDestination
    cursor_filter: CursorFilter | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

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
        """Plan the stream's window from its stored state and narrow the source to it."""
        assert step.incremental is not None
        options = resources.options
        spec = step.incremental
        if options.cursor:
            spec = spec.model_copy(update={"cursor": options.cursor})
        if not isinstance(destination, StatefulDestination):
            raise ConfigError(
                f"destination {destination.name} cannot keep incremental state",
                hint="load incrementally into DuckDB, PostgreSQL or BigQuery",
            )
        key = state_key(pipeline.pipeline_id, step.step_id, stream)
        plan = _plan(spec, destination, key, options)
        _log_plan(stream, spec, plan)
        if isinstance(source, WindowedSource):
            source.restrict(
                CursorWindow(spec.cursor, spec.cursor_type, plan.start, plan.end, spec.timezone)
            )
        mode: WriteMode = "replace" if options.full_refresh else step.destination.write_mode
        return cls(spec, plan, key, resources.run_id, mode, destination)

    def begin(self, schema: TableSchema, primary_key: tuple[str, ...], write_mode: str) -> None:
        """Check the cursor column and set up the filter for this write mode."""
        self._check_cursor(schema)
        append = write_mode == "append"
        self.cursor_filter = CursorFilter(self.spec, self.plan, primary_key, append)
        if append and self.plan.mode == "adopted":
            self._adopt_boundary(schema, primary_key)

    def _adopt_boundary(self, schema: TableSchema, primary_key: tuple[str, ...]) -> None:
        """Adopting a table for append: the rows it holds at MAX(cursor) are the rows
        already loaded at the watermark (the start is inclusive, so they are read again)."""
        import pyarrow as pa

        assert self.cursor_filter is not None
        names = list(primary_key or schema.names)
        rows = self.destination.rows_at_max(self.spec.cursor, names)
        if rows is None:
            return
        target = schema.to_arrow()
        rows = rows.cast(pa.schema([target.field(n) for n in names]))
        identities = {
            self.cursor_filter.identity_of(batch, i)
            for batch in rows.to_batches()
            for i in range(batch.num_rows)
        }
        self.plan = replace(self.plan, previous=State(self.plan.start, frozenset(identities)))
        self.cursor_filter.plan = self.plan

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch without what the plan keeps out (reader threads share the filter)."""
        assert self.cursor_filter is not None
        with self.lock:
            return self.cursor_filter.apply(batch)

    def _check_cursor(self, schema: TableSchema) -> None:
        """The cursor column is in the stream, with a type that fits the cursor type."""
        column = schema.column(self.spec.cursor)
        if column is None:
            raise SchemaError(
                f"cursor column '{self.spec.cursor}' is not in the stream."
                f"{did_you_mean(self.spec.cursor, schema.names)}",
                hint=f"columns: {', '.join(schema.names)}",
            )
        if column.type.kind not in _CURSOR_KINDS[self.spec.cursor_type]:
            raise SchemaError(
                f"cursor column '{self.spec.cursor}' is {column.type}, not a "
                f"{self.spec.cursor_type}",
                hint="set incremental.cursor_type to match the column "
                "(timestamp, integer or objectid)",
            )

    @property
    def filtered(self) -> int:
        """Rows the filter kept out of the load."""
        return self.cursor_filter.filtered if self.cursor_filter else 0

    def next_state(self) -> StateRecord | None:
        """The state record to commit with the rows, if the watermark is known."""
        assert self.cursor_filter is not None
        state = self.cursor_filter.next_state()
        if state is None:
            return None
        return StateRecord(
            self.key, self.spec.cursor, encode(state.watermark), tuple(state.boundary), self.run_id
        )

    def summary(self) -> dict[str, Any]:
        """The plan and what the filter counted, for the run's details."""
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


def _plan(
    spec: IncrementalSpec, destination: StatefulDestination, key: str, options: SyncOptions
) -> Plan:
    """The window of this run, from the committed state, else the destination's MAX(cursor)."""
    found = [r for r in destination.read_states(key) if r.key == key]
    state = None
    if found and found[0].watermark is not None and not options.full_refresh:
        watermark = decode(found[0].watermark, spec.cursor_type)
        state = State(watermark, frozenset(found[0].boundary))
    top = None
    if state is None and not options.full_refresh:
        top = instant(destination.cursor_max(spec.cursor), spec.timezone)
    return plan_window(spec, state, top, dt.datetime.now(dt.UTC), options)


def _log_plan(stream: str, spec: IncrementalSpec, plan: Plan) -> None:
    """The plan line: which mode, which window and why."""
    log.info(
        "%s: %s sync of %s >= %s and < %s (%s)",
        stream,
        plan.mode,
        spec.cursor,
        encode(plan.start) or "the beginning",
        encode(plan.end) or "no end",
        plan.reason,
    )
