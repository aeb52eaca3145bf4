"""A sync step's stream: its sources opened (several may feed one table), its schema
agreed, its destination prepared, and the splits of every source read as one."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deltaflow import connectors
from deltaflow.connectors.protocol import Split
from deltaflow.errors import ConfigError, SchemaError
from deltaflow.schema.types import TableSchema
from deltaflow.sync.dates import parsed_dates
from deltaflow.sync.window import Incremental

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode
    from deltaflow.config.models import Pipeline, SyncStep
    from deltaflow.config.sources import SourceSpec
    from deltaflow.connectors.protocol import Destination, RunResources, Source


def default_parallelism() -> int:
    """Reader threads per stream when the step does not say: the cores, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Part:
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


@dataclass(frozen=True)
class Stream:
    """A step's sources, opened as one stream into its prepared destination."""

    name: str
    parts: list[Part]
    destination: Destination
    schema: TableSchema
    primary_key: tuple[str, ...]
    write_mode: WriteMode
    parallelism: int

    @property
    def increments(self) -> list[Incremental]:
        """The incremental run of each source that has one."""
        return [p.incremental for p in self.parts if p.incremental is not None]


def open_stream(step: SyncStep, pipeline: Pipeline, resources: RunResources) -> Stream:
    """Open the step's destination and sources, agree on the schema, plan each source's
    window, and prepare the destination for the stream."""
    parallelism = step.parallelism or default_parallelism()
    dest_conn = pipeline.connections[step.destination.connection]
    destination = connectors.open_destination(dest_conn, step.destination, resources)
    parts = [
        _open_part(step, pipeline, spec, resources, parallelism, destination)
        for spec in step.all_sources
    ]
    name = parts[0].name if len(parts) == 1 else step.step_id
    write_mode = step.destination.write_mode
    if step.incremental is not None and resources.options.full_refresh:
        write_mode = "replace"
    schema = parsed_dates(_common_schema(step, parts), step.parse_dates)
    primary_key = tuple(step.destination.primary_key) or schema.primary_key
    _check_keys(primary_key, schema.names, name)
    for part in parts:
        if part.incremental is not None:
            part.incremental.begin(schema, primary_key, write_mode)
    destination.prepare(schema)
    return Stream(name, parts, destination, schema, primary_key, write_mode, parallelism)


def _open_part(
    step: SyncStep,
    pipeline: Pipeline,
    spec: SourceSpec,
    resources: RunResources,
    parallelism: int,
    destination: Destination,
) -> Part:
    """One source opened, with its incremental run planned and its row limit."""
    conn = pipeline.connections[spec.connection]
    source = connectors.open_source(conn, spec, resources, step.batch_size, parallelism)
    name = source.name or step.step_id
    incremental = None
    if step.incremental is not None:
        incremental = Incremental.start(step, pipeline, source, destination, name, resources)
    limit = resources.options.limit or spec.limit
    return Part(name, source, incremental, limit)


def _common_schema(step: SyncStep, parts: list[Part]) -> TableSchema:
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


def _check_keys(primary_key: tuple[str, ...], columns: list[str], stream: str) -> None:
    """Every primary key column is a column of the stream."""
    missing = [k for k in primary_key if k not in columns]
    if missing:
        raise SchemaError(
            f"primary key columns {missing} are not in stream '{stream}'",
            hint=f"choose primary_key from: {', '.join(columns)}",
        )


def order_matters(step: SyncStep, schema: TableSchema, primary_key: tuple[str, ...]) -> bool:
    """A merge keeps the last row of a key, so rows must arrive in the same order on every
    run, unless the source's own primary key already makes every merge key unique."""
    if step.destination.write_mode != "merge":
        return False
    unique = bool(schema.primary_key) and set(schema.primary_key) <= set(primary_key)
    return not unique


class Combined:
    """The step's sources read as one: every source's splits, each batch passed through
    its source's incremental filter on the reader thread. Nothing else runs there: reader
    threads that take the GIL often slow the whole stream down."""

    def __init__(self, parts: list[Part]):
        self.parts = parts
        self.name = parts[0].name

    def discover(self) -> TableSchema:
        """Not used: the sync discovers each part itself."""
        raise NotImplementedError

    def splits(self) -> list[Split]:
        """Every part's splits, numbered in one sequence, each naming its part."""
        out: list[Split] = []
        for number, part in enumerate(self.parts):
            for split in part.source.splits():
                out.append(Split(len(out), {"part": number, "split": split}, split.rows))
        return out

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        """The split's batches, filtered to the part's window and cut to its limit."""
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
