"""Run one sync step: open the stream, prepare the destination, load, reconcile the counts.

The parts live beside it: ``streams`` (sources and destination opened, several sources
into one table), ``window`` (each stream's incremental run and state key), ``load`` (the
hand-off to the destination, rejected records) and ``observer`` (progress).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deltaflow.errors import Code, LoadError
from deltaflow.sync.load import load_split_by_split, load_streamed
from deltaflow.sync.observer import NullObserver, Observer
from deltaflow.sync.streams import Stream, default_parallelism, open_stream
from deltaflow.sync.window import Incremental, state_key

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.models import Pipeline, SyncStep
    from deltaflow.connectors.protocol import LoadResult, RunResources
    from deltaflow.quality.inflight import RowChecks

__all__ = [
    "Incremental",
    "NullObserver",
    "Observer",
    "SyncOutcome",
    "default_parallelism",
    "run_sync",
    "state_key",
]


@dataclass
class SyncOutcome:
    """What one sync step did: rows read, loaded, filtered and quarantined, and details."""

    stream: str
    destination: str
    write_mode: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_filtered: int = 0
    rows_quarantined: int = 0
    table_rows: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def run_sync(
    step: SyncStep, pipeline: Pipeline, resources: RunResources, observer: Observer | None = None
) -> SyncOutcome:
    """Sync the step's sources into its destination, exactly once; raises when the rows
    read do not add up to those loaded, filtered and quarantined."""
    observer = observer or NullObserver()
    stream = open_stream(step, pipeline, resources)
    outcome = SyncOutcome(stream.name, stream.destination.name, stream.write_mode)
    count = _counter(outcome, observer, stream.name)
    target = stream.schema.to_arrow()
    checks = _row_checks(step, resources, stream)
    if step.resumable:
        result, unconverted = load_split_by_split(
            step, pipeline, stream, resources, target, count, checks
        )
        observer.stream_finished(stream.name)
    else:
        result, unconverted = load_streamed(
            step, stream, resources, target, count, checks, observer
        )
    outcome.rows_read += unconverted
    return _finish(outcome, result, stream, checks)


def _counter(
    outcome: SyncOutcome, observer: Observer, stream: str
) -> Callable[[pa.RecordBatch], None]:
    """Counts each batch read into the outcome, and tells the observer."""

    def count(batch: pa.RecordBatch) -> None:
        outcome.rows_read += batch.num_rows
        observer.rows_read(stream, batch.num_rows)

    return count


def _row_checks(step: SyncStep, resources: RunResources, stream: Stream) -> RowChecks | None:
    """The step's in-flight row checks, prepared for the stream's columns, if it has any."""
    if not step.checks:
        return None
    from deltaflow.quality.inflight import RowChecks

    checks = RowChecks(list(step.checks), resources.run_id, stream.name)
    checks.prepare(stream.schema.names)
    return checks


def _finish(
    outcome: SyncOutcome, result: LoadResult, stream: Stream, checks: RowChecks | None
) -> SyncOutcome:
    """The outcome with the load's figures, the row checks' and incremental summaries,
    reconciled."""
    outcome.rows_loaded, outcome.table_rows = result.rows_loaded, result.table_rows
    outcome.details = dict(result.details)
    if checks is not None:
        outcome.details["row_checks"] = checks.summary()
    outcome.rows_quarantined = result.rows_quarantined
    if result.rows_quarantined:
        outcome.details["quarantined"] = result.rows_quarantined
    increments = stream.increments
    if increments:
        # Filtered rows never reach the consumer that counts rows read.
        outcome.rows_filtered = sum(i.filtered for i in increments)
        outcome.rows_read += outcome.rows_filtered
        outcome.details["incremental"] = _incremental_summary(stream)
    _reconcile(outcome)
    return outcome


def _incremental_summary(stream: Stream) -> dict[str, Any]:
    """The incremental summary of the stream's one source, or of each source by name."""
    summaries = {p.name: p.incremental.summary() for p in stream.parts if p.incremental}
    return next(iter(summaries.values())) if len(stream.parts) == 1 else summaries


def _reconcile(outcome: SyncOutcome) -> None:
    """Every row read is loaded, filtered or quarantined (with a reason): a difference
    means rows were lost, and fails the step."""
    kept = outcome.rows_loaded + outcome.rows_filtered + outcome.rows_quarantined
    if outcome.rows_read != kept:
        raise LoadError(
            f"stream '{outcome.stream}': read {outcome.rows_read} rows but loaded "
            f"{outcome.rows_loaded}, filtered {outcome.rows_filtered} and quarantined "
            f"{outcome.rows_quarantined}",
            hint="the destination may hold a partial load: rerun the step with write_mode "
            "replace or merge, and report this as a bug",
            code=Code.LOAD_RECONCILIATION_FAILED,
        )
