"""Run one sync step: discover, prepare the destination, stream splits into the load."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from deltaflow import connectors
from deltaflow.engine.local import read_splits
from deltaflow.errors import LoadError, SchemaError

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.models import Pipeline, SyncStep
    from deltaflow.connectors.base import RunResources
    from deltaflow.schema.types import TableSchema


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
    schema = source.discover()
    primary_key = tuple(step.destination.primary_key) or schema.primary_key
    stream = source.name or step.step_id
    _check_keys(primary_key, schema.names, stream)
    destination.prepare(schema)
    splits = source.splits()
    outcome = SyncOutcome(stream, destination.name, step.destination.write_mode)

    def count(batch: pa.RecordBatch) -> None:
        outcome.rows_read += batch.num_rows
        observer.rows_read(stream, batch.num_rows)

    known = [s.rows for s in splits]
    observer.stream_started(stream, None if None in known else sum(known))  # type: ignore[arg-type]
    batches = read_splits(
        source, splits, parallelism, count, ordered=_order_matters(step, schema, primary_key)
    )
    target = schema.to_arrow()
    try:
        reader = pa.RecordBatchReader.from_batches(target, (_conform(b, target) for b in batches))
        result = destination.load(reader, step.destination.write_mode, primary_key)
    finally:
        batches.close()
        observer.stream_finished(stream)
    outcome.rows_loaded, outcome.table_rows = result.rows_loaded, result.table_rows
    outcome.details = dict(result.details)
    _reconcile(outcome)
    return outcome


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
    """Every row read is loaded: a difference means rows were lost, and fails the step."""
    if outcome.rows_read != outcome.rows_loaded:
        raise LoadError(
            f"stream '{outcome.stream}': read {outcome.rows_read} rows but loaded "
            f"{outcome.rows_loaded}",
            hint="the destination may hold a partial load: rerun the step with write_mode "
            "replace or merge, and report this as a bug",
            code="LOAD_RECONCILIATION_FAILED",
        )
