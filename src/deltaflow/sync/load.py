"""The hand-off from the read to the destination: batches conformed to the table's
schema, row checks applied, crash points for the harness, and the rejected records
collected for the destination to quarantine in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.protocol import (
    LoadResult,
    RejectingSource,
    ResumableSource,
    Split,
    StatefulDestination,
    StateRecord,
)
from deltaflow.engine.local import read_splits
from deltaflow.errors import ConfigError
from deltaflow.faults import crash_point
from deltaflow.sync.dates import parse_dates
from deltaflow.sync.streams import Combined, Part, Stream, order_matters
from deltaflow.sync.window import state_key

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.models import Pipeline, SyncStep
    from deltaflow.connectors.protocol import Destination, RunResources
    from deltaflow.quality.inflight import RowChecks
    from deltaflow.sync.observer import Observer

log = logging.getLogger("deltaflow.sync")

Count = Callable[["pa.RecordBatch"], None]


@dataclass
class Rejected:
    """The quarantine records of what the step's sources could not convert, collected
    when the destination asks for them (after the rows are in, before the commit)."""

    parts: list[Part]
    run_id: str
    checks: RowChecks | None = None
    count: int = 0
    """Rows the sources left out (never counted as read)."""

    def __call__(self) -> pa.Table | None:
        import pyarrow as pa

        tables = []
        failed = self.checks.take() if self.checks is not None else None
        for part in self.parts:
            if not isinstance(part.source, RejectingSource):
                continue
            table = part.source.take_rejected(self.run_id)
            if table is not None:
                tables.append(table)
        records = pa.concat_tables(tables) if tables else None
        if records is not None:
            self.count += records.num_rows
        if failed is None:
            return records
        return failed if records is None else pa.concat_tables([records, failed])


def load_streamed(
    step: SyncStep,
    stream: Stream,
    resources: RunResources,
    target: pa.Schema,
    count: Count,
    checks: RowChecks | None,
    observer: Observer,
) -> tuple[LoadResult, int]:
    """Read every split of every source on reader threads and load the whole stream in
    one destination transaction, with the sources' next state. Returns the load's result
    and the rows the sources left out (never counted as read)."""
    import pyarrow as pa

    batches = _read(step, stream, count, observer)
    commit_state = _commit_state(stream)
    rejected = Rejected(stream.parts, resources.run_id, checks)
    try:
        conformed = (
            checked(conform(parse_dates(b, step.parse_dates), target), checks) for b in batches
        )
        reader = pa.RecordBatchReader.from_batches(target, _with_crash_points(conformed))
        result = stream.destination.load(
            reader, stream.write_mode, stream.primary_key, commit_state, rejected
        )
    finally:
        batches.close()
        observer.stream_finished(stream.name)
    return result, rejected.count


def _read(
    step: SyncStep, stream: Stream, count: Count, observer: Observer
) -> Generator[pa.RecordBatch, None, None]:
    """The stream's batches from the reader threads, in split order when a merge needs it."""
    combined = Combined(stream.parts)
    splits = combined.splits()
    known = [s.rows for s in splits]
    observer.stream_started(stream.name, None if None in known else sum(known))  # type: ignore[arg-type]
    ordered = order_matters(step, stream.schema, stream.primary_key) or (
        len(stream.parts) > 1 and stream.write_mode == "merge"
    )
    return read_splits(combined, splits, stream.parallelism, count, ordered=ordered)


def _commit_state(stream: Stream) -> Callable[[], list[StateRecord]] | None:
    """What the destination commits with the rows: each source's next state; nothing
    when the step is not incremental, or when a limit makes the run a sample."""
    increments = stream.increments

    def states() -> list[StateRecord]:
        return [r for r in (i.next_state() for i in increments) if r is not None]

    limited = any(p.limit is not None for p in stream.parts)
    if limited and increments:
        log.warning("%s: a limited run reads a sample and does not move the watermark", stream.name)
    return states if increments and not limited else None


def load_split_by_split(
    step: SyncStep,
    pipeline: Pipeline,
    stream: Stream,
    resources: RunResources,
    target: pa.Schema,
    count: Count,
    checks: RowChecks | None = None,
) -> tuple[LoadResult, int]:
    """``resumable``: load each split in its own transaction, committing with it the list
    of splits done, so a rerun after a crash reads only the splits not yet loaded. The
    record goes once the whole stream is in."""
    import pyarrow as pa

    (part,) = _resumable_parts(step, stream.parts, stream.destination, stream.write_mode)
    source, destination = part.source, stream.destination
    assert isinstance(source, ResumableSource)
    assert isinstance(destination, StatefulDestination)
    key = state_key(pipeline.pipeline_id, step.step_id, part.name) + "#splits"
    done = _splits_done(part.name, source, destination, key)
    splits = source.splits()
    token = source.resume_token()
    todo = [s for s in splits if str(s.index) not in done]
    loaded, table_rows, quarantined, unconverted = 0, None, 0, 0
    details: dict[str, Any] = {}
    for split in todo:
        batches = _split_batches(source, split, part, count, step.parse_dates, target, checks)
        finished = tuple(sorted(done | {str(split.index)}, key=int))
        record = StateRecord(key, "splits", token, finished, resources.run_id)

        def progress(record: StateRecord = record) -> list[StateRecord]:
            return [record]

        reader = pa.RecordBatchReader.from_batches(target, batches)
        rejected = Rejected(stream.parts, resources.run_id, checks)
        result = destination.load(reader, stream.write_mode, stream.primary_key, progress, rejected)
        unconverted += rejected.count
        done.add(str(split.index))
        loaded += result.rows_loaded
        quarantined += result.rows_quarantined
        table_rows = result.table_rows
        details |= result.details
    destination.delete_states(key)
    details["splits"] = {"total": len(splits), "already_loaded": len(splits) - len(todo)}
    return LoadResult(loaded, table_rows, details, quarantined), unconverted


def _splits_done(
    name: str, source: ResumableSource, destination: StatefulDestination, key: str
) -> set[str]:
    """The splits a crashed run loaded already, when the source can resume its read."""
    found = [r for r in destination.read_states(key) if r.key == key]
    if found and found[0].watermark and source.resume(found[0].watermark):
        done = set(found[0].boundary)
        log.info("%s: resuming, %d splits already loaded", name, len(done))
        return done
    return set()


def _split_batches(
    source: ResumableSource,
    split: Split,
    part: Part,
    count: Count,
    formats: dict[str, str],
    target: pa.Schema,
    checks: RowChecks | None,
) -> Iterator[pa.RecordBatch]:
    """One split's batches, cut to the limit, counted and conformed to the table."""
    for batch in source.read(split):
        batch = part.take(batch)
        count(batch)
        yield checked(conform(parse_dates(batch, formats), target), checks)


def _resumable_parts(
    step: SyncStep, parts: list[Part], destination: Destination, write_mode: str
) -> list[Part]:
    """The step's one source, when it can be loaded split by split; else why not."""
    problem = ""
    if len(parts) != 1 or step.incremental is not None:
        problem = "a step with one source and no incremental settings"
    elif write_mode not in ("append", "merge"):
        problem = "write_mode append or merge (a replace is all or nothing)"
    elif not isinstance(parts[0].source, ResumableSource):
        problem = "a source that can resume its splits (BigQuery)"
    elif not isinstance(destination, StatefulDestination):
        problem = "a destination that keeps state (DuckDB, PostgreSQL, BigQuery)"
    if problem:
        raise ConfigError(
            f"step '{step.step_id}' is resumable, which needs {problem}",
            hint="remove 'resumable: true' or change the step to fit",
        )
    return parts


def checked(batch: pa.RecordBatch, checks: RowChecks | None) -> pa.RecordBatch:
    """The batch after the step's in-flight row checks, if it has any."""
    return batch if checks is None else checks.apply(batch)


def conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """The batch cast to the table's Arrow schema, when it differs."""
    return batch if batch.schema.equals(target) else batch.cast(target)


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
