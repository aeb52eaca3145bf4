"""Run one sync step: discover, prepare the destination, stream splits into the load."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from deltaflow import connectors
from deltaflow.connectors.protocol import (
    CursorWindow,
    LoadResult,
    RejectingSource,
    ResumableSource,
    Split,
    StatefulDestination,
    StateRecord,
    WindowedSource,
    encode,
)
from deltaflow.engine.local import read_splits
from deltaflow.errors import ConfigError, DataError, LoadError, SchemaError, did_you_mean
from deltaflow.faults import crash_point
from deltaflow.schema.types import LogicalType, TableSchema
from deltaflow.sync.incremental import CursorFilter, Plan, State, decode, instant, plan_window

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode
    from deltaflow.config.models import IncrementalSpec, Pipeline, SourceSpec, SyncStep
    from deltaflow.connectors.protocol import Destination, RunResources, Source
    from deltaflow.quality.inflight import RowChecks


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
    rows_quarantined: int = 0
    table_rows: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def default_parallelism() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_sync(
    step: SyncStep, pipeline: Pipeline, resources: RunResources, observer: Observer | None = None
) -> SyncOutcome:
    import pyarrow as pa

    observer = observer or NullObserver()
    parallelism = step.parallelism or default_parallelism()
    dest_conn = pipeline.connections[step.destination.connection]
    destination = connectors.open_destination(dest_conn, step.destination, resources)
    parts = [
        _open_part(step, pipeline, spec, resources, parallelism, destination)
        for spec in step.all_sources
    ]
    stream = parts[0].name if len(parts) == 1 else step.step_id
    write_mode = step.destination.write_mode
    if step.incremental is not None and resources.options.full_refresh:
        write_mode = "replace"
    schema = _parsed_dates(_common_schema(step, parts), step.parse_dates)
    primary_key = tuple(step.destination.primary_key) or schema.primary_key
    _check_keys(primary_key, schema.names, stream)
    for part in parts:
        if part.incremental is not None:
            part.incremental.begin(schema, primary_key, write_mode)
    destination.prepare(schema)
    outcome = SyncOutcome(stream, destination.name, write_mode)

    def count(batch: pa.RecordBatch) -> None:
        outcome.rows_read += batch.num_rows
        observer.rows_read(stream, batch.num_rows)

    target = schema.to_arrow()
    checks = None
    if step.checks:
        from deltaflow.quality.inflight import RowChecks

        checks = RowChecks(list(step.checks), resources.run_id, stream)
        checks.prepare(schema.names)
    if step.resumable:
        result, unconverted = _load_split_by_split(
            step,
            pipeline,
            parts,
            destination,
            resources,
            target,
            write_mode,
            primary_key,
            count,
            checks,
        )
        outcome.rows_read += unconverted
        observer.stream_finished(stream)
        return _finish(outcome, result, parts, checks)

    combined = _Combined(parts)
    splits = combined.splits()
    known = [s.rows for s in splits]
    observer.stream_started(stream, None if None in known else sum(known))  # type: ignore[arg-type]
    ordered = _order_matters(step, schema, primary_key) or (
        len(parts) > 1 and write_mode == "merge"
    )
    batches = read_splits(combined, splits, parallelism, count, ordered=ordered)
    increments = [p.incremental for p in parts if p.incremental is not None]

    def states() -> list[StateRecord]:
        return [r for r in (i.next_state() for i in increments) if r is not None]

    limited = any(p.limit is not None for p in parts)
    if limited and increments:
        log.warning("%s: a limited run reads a sample and does not move the watermark", stream)
    commit_state = states if increments and not limited else None
    rejected = _Rejected(parts, resources.run_id, checks)
    try:
        conformed = (
            _checked(_conform(_parse_dates(b, step.parse_dates), target), checks) for b in batches
        )
        reader = pa.RecordBatchReader.from_batches(target, _with_crash_points(conformed))
        result = destination.load(reader, write_mode, primary_key, commit_state, rejected)
    finally:
        batches.close()
        observer.stream_finished(stream)
    outcome.rows_read += rejected.count
    return _finish(outcome, result, parts, checks)


def _checked(batch: pa.RecordBatch, checks: RowChecks | None) -> pa.RecordBatch:
    return batch if checks is None else checks.apply(batch)


@dataclass
class _Rejected:
    """The quarantine records of what the step's sources could not convert, collected
    when the destination asks for them (after the rows are in, before the commit)."""

    parts: list[_Part]
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


def _finish(
    outcome: SyncOutcome, result: LoadResult, parts: list[_Part], checks: RowChecks | None
) -> SyncOutcome:
    """The outcome with the load's figures, the row checks' and incremental summaries,
    reconciled."""
    increments = [p.incremental for p in parts if p.incremental is not None]
    outcome.rows_loaded, outcome.table_rows = result.rows_loaded, result.table_rows
    outcome.details = dict(result.details)
    if checks is not None:
        outcome.details["row_checks"] = checks.summary()
    outcome.rows_quarantined = result.rows_quarantined
    if result.rows_quarantined:
        outcome.details["quarantined"] = result.rows_quarantined
    if increments:
        # Filtered rows never reach the consumer that counts rows read.
        outcome.rows_filtered = sum(i.filtered for i in increments)
        outcome.rows_read += outcome.rows_filtered
        summaries = {p.name: p.incremental.summary() for p in parts if p.incremental}
        outcome.details["incremental"] = (
            next(iter(summaries.values())) if len(parts) == 1 else summaries
        )
    _reconcile(outcome)
    return outcome


def _load_split_by_split(
    step: SyncStep,
    pipeline: Pipeline,
    parts: list[_Part],
    destination: Destination,
    resources: RunResources,
    target: pa.Schema,
    write_mode: WriteMode,
    primary_key: tuple[str, ...],
    count: Callable[[pa.RecordBatch], None],
    checks: RowChecks | None = None,
) -> tuple[LoadResult, int]:
    """``resumable``: load each split in its own transaction, committing with it the list
    of splits done, so a rerun after a crash reads only the splits not yet loaded. The
    record goes once the whole stream is in."""
    import pyarrow as pa

    (part,) = _resumable_parts(step, parts, destination, write_mode)
    source = part.source
    assert isinstance(source, ResumableSource)
    assert isinstance(destination, StatefulDestination)
    key = state_key(pipeline.pipeline_id, step.step_id, part.name) + "#splits"
    found = [r for r in destination.read_states(key) if r.key == key]
    done: set[str] = set()
    if found and found[0].watermark and source.resume(found[0].watermark):
        done = set(found[0].boundary)
        log.info("%s: resuming, %d splits already loaded", part.name, len(done))
    splits = source.splits()
    token = source.resume_token()
    todo = [s for s in splits if str(s.index) not in done]
    loaded, table_rows, quarantined, unconverted = 0, None, 0, 0
    details: dict[str, Any] = {}
    for split in todo:

        def batches(split: Split = split) -> Iterator[pa.RecordBatch]:
            for batch in source.read(split):
                batch = part.take(batch)
                count(batch)
                yield _checked(_conform(_parse_dates(batch, step.parse_dates), target), checks)

        finished = tuple(sorted(done | {str(split.index)}, key=int))
        record = StateRecord(key, "splits", token, finished, resources.run_id)

        def progress(record: StateRecord = record) -> list[StateRecord]:
            return [record]

        reader = pa.RecordBatchReader.from_batches(target, batches())
        rejected = _Rejected(parts, resources.run_id, checks)
        result = destination.load(reader, write_mode, primary_key, progress, rejected)
        unconverted += rejected.count
        done.add(str(split.index))
        loaded += result.rows_loaded
        quarantined += result.rows_quarantined
        table_rows = result.table_rows
        details |= result.details
    destination.delete_states(key)
    details["splits"] = {"total": len(splits), "already_loaded": len(splits) - len(todo)}
    return LoadResult(loaded, table_rows, details, quarantined), unconverted


def _resumable_parts(
    step: SyncStep, parts: list[_Part], destination: Destination, write_mode: str
) -> list[_Part]:
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


@dataclass
class _Part:
    """One source of a step, with its incremental run and the rows it may still read."""

    name: str
    source: Source
    incremental: Incremental | None
    limit: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch, cut to what the limit leaves (reader threads share the count)."""
        if self.limit is None:
            return batch
        with self.lock:
            kept = batch.slice(0, self.limit)
            self.limit -= kept.num_rows
        return kept


def _open_part(
    step: SyncStep,
    pipeline: Pipeline,
    spec: SourceSpec,
    resources: RunResources,
    parallelism: int,
    destination: Destination,
) -> _Part:
    conn = pipeline.connections[spec.connection]
    source = connectors.open_source(conn, spec, resources, step.batch_size, parallelism)
    name = source.name or step.step_id
    incremental = None
    if step.incremental is not None:
        incremental = Incremental.start(step, pipeline, source, destination, name, resources)
    limit = resources.options.limit or spec.limit
    return _Part(name, source, incremental, limit)


def _common_schema(step: SyncStep, parts: list[_Part]) -> TableSchema:
    """The stream's schema: that of its source, or the one every source agrees on."""
    names = [p.name for p in parts]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"sources of step '{step.step_id}' share the stream name '{repeated[0]}'",
            hint="give each source its own 'stream:' name (it keys its incremental state)",
        )
    schemas = [p.source.discover() for p in parts]
    first = schemas[0]
    for part, other in zip(parts[1:], schemas[1:], strict=True):
        if [(c.name, c.type) for c in other.columns] != [(c.name, c.type) for c in first.columns]:
            mine = ", ".join(f"{c.name} {c.type}" for c in other.columns)
            theirs = ", ".join(f"{c.name} {c.type}" for c in first.columns)
            raise SchemaError(
                f"sources of step '{step.step_id}' differ: '{part.name}' has ({mine}), "
                f"'{parts[0].name}' has ({theirs})",
                hint="select the same columns with the same types in every source "
                "('columns:', or a query with casts)",
            )
    keys = first.primary_key if all(s.primary_key == first.primary_key for s in schemas) else ()
    return TableSchema(first.columns, keys)


class _Combined:
    """The step's sources read as one: every source's splits, each batch passed through
    its source's incremental filter on the reader thread. Nothing else runs there: reader
    threads that take the GIL often slow the whole stream down."""

    def __init__(self, parts: list[_Part]):
        self.parts = parts
        self.name = parts[0].name

    def discover(self) -> TableSchema:
        raise NotImplementedError  # the sync discovers each part itself

    def splits(self) -> list[Split]:
        out: list[Split] = []
        for number, part in enumerate(self.parts):
            for split in part.source.splits():
                out.append(Split(len(out), {"part": number, "split": split}, split.rows))
        return out

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        part = self.parts[split.params["part"]]
        if part.incremental is None and part.limit is None:
            yield from part.source.read(split.params["split"])
            return
        for batch in part.source.read(split.params["split"]):
            if part.incremental is not None:
                batch = part.incremental.apply(batch)
            batch = part.take(batch)
            if batch.num_rows:
                yield batch
            if part.limit == 0:
                return


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
        column = schema.column(self.spec.cursor)
        if column is None:
            raise SchemaError(
                f"cursor column '{self.spec.cursor}' is not in the stream."
                f"{did_you_mean(self.spec.cursor, schema.names)}",
                hint=f"columns: {', '.join(schema.names)}",
            )
        wanted = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
        kinds = {"integer": wanted, "timestamp": ("timestamp", "date"), "objectid": ("string",)}
        fits = column.type.kind in kinds[self.spec.cursor_type]
        if not fits:
            raise SchemaError(
                f"cursor column '{self.spec.cursor}' is {column.type}, not a "
                f"{self.spec.cursor_type}",
                hint="set incremental.cursor_type to match the column "
                "(timestamp, integer or objectid)",
            )

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


def _parsed_dates(schema: TableSchema, formats: dict[str, str]) -> TableSchema:
    """The schema with the ``parse_dates`` columns as dates."""
    for name in formats:
        column = schema.column(name)
        if column is None:
            raise SchemaError(
                f"parse_dates names '{name}', not a column of the stream."
                f"{did_you_mean(name, schema.names)}",
                hint=f"columns: {', '.join(schema.names)}",
            )
        if column.type.kind not in ("string", "int32", "int64"):
            raise SchemaError(
                f"parse_dates.{name}: the column is {column.type}, not text or an integer",
                hint="parse_dates turns text like 20240131 into a DATE; remove this column",
            )
    return TableSchema(
        tuple(
            replace(c, type=LogicalType("date")) if c.name in formats else c for c in schema.columns
        ),
        schema.primary_key,
    )


def _parse_dates(batch: pa.RecordBatch, formats: dict[str, str]) -> pa.RecordBatch:
    """The ``parse_dates`` columns parsed to dates; an empty string is NULL, and a value
    that does not parse stops the step with the column, the value and the format."""
    if not formats:
        return batch
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = list(batch.columns)
    for name, fmt in formats.items():
        i = batch.schema.get_field_index(name)
        text: Any = columns[i].cast(pa.string())
        text = pc.if_else(pc.equal(text, pa.scalar("")), pa.scalar(None, pa.string()), text)
        parsed: Any = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        failed: Any = pc.and_(pc.is_null(parsed), pc.is_valid(text))
        if pc.any(failed).as_py():
            first = text.filter(failed)[0].as_py()
            raise DataError(
                f"column {name}: '{first}' is not a date in the format '{fmt}' "
                f"({pc.sum(failed).as_py()} such values in this batch)",
                hint=f"fix the values at the source, or correct parse_dates.{name}",
            )
        columns[i] = parsed.cast(pa.date32())
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


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
            code="LOAD_RECONCILIATION_FAILED",
        )
