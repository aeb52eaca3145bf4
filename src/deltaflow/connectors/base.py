"""The connector protocol: small interfaces every source and destination implements.

A source is bound to one stream: it describes its schema, cuts the work into splits and
reads a split as Arrow record batches. A destination is bound to one table: it creates or
evolves the table and loads a stream of batches atomically with the chosen write mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from deltaflow.errors import LoadError, SchemaError
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode
    from deltaflow.schema.types import TableSchema
    from deltaflow.sync.incremental import SyncOptions


def split_table(name: str, default_schema: str) -> tuple[str, str]:
    """``raw.orders`` -> ("raw", "orders"); a bare name lives in ``default_schema``."""
    parts = name.split(".")
    if len(parts) == 1 and parts[0]:
        return default_schema, parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise SchemaError(
        f"table name '{name}' is not 'table' or 'schema.table'", hint="write e.g. 'raw.orders'"
    )


def quoted(schema: str, table: str) -> str:
    """``"schema"."table"``, each part quoted so that no name can inject SQL."""
    return f"{quote_double(schema)}.{quote_double(table)}"


def check_merge_keys(
    table: str, primary_key: tuple[str, ...], count_nulls: Callable[[str], int]
) -> None:
    """Refuse a merge without a key, or with staged rows whose key holds a NULL.

    ``count_nulls`` runs ``SELECT count(*) FROM <staging> WHERE <condition>``."""
    if not primary_key:
        raise LoadError(
            f"write_mode merge into {table} needs a primary key",
            hint="set destination.primary_key, or use write_mode append or replace",
            code="LOAD_NO_PRIMARY_KEY",
        )
    nulls = count_nulls(" OR ".join(f"{quote_double(k)} IS NULL" for k in primary_key))
    if nulls:
        keys = ", ".join(quote_double(k) for k in primary_key)
        raise LoadError(
            f"{nulls} rows have NULL in the primary key ({keys}) of {table}",
            hint="merge needs a complete primary key; filter or fix those rows",
            code="LOAD_NULL_PRIMARY_KEY",
        )


def schema_change_error(
    table: str, engine: str, column: str, current: str, wanted: str
) -> SchemaError:
    """The table's column differs from the source's in a way the policy does not allow."""
    return SchemaError(
        f"column {column} of {table} is {current} in {engine} but the source needs {wanted}",
        hint="set destination.on_schema_change: 'evolve' (add columns and widen types), "
        "'add_columns' (only add), or 'fail'; a narrowing change needs a manual migration "
        "or drop_existing: true",
        code="SCHEMA_CHANGE_REJECTED",
    )


@dataclass(frozen=True)
class Split:
    """One independently readable piece of a stream."""

    index: int
    params: Mapping[str, Any] = field(default_factory=dict)
    rows: int | None = None  # known size, for progress; None when unknown


@dataclass(frozen=True)
class LoadResult:
    rows_loaded: int
    table_rows: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    rows_quarantined: int = 0
    """Rows the destination could not hold, kept in its quarantine table."""


class Source(Protocol):
    name: str

    def discover(self) -> TableSchema: ...
    def splits(self) -> list[Split]: ...
    def read(self, split: Split) -> Iterator[pa.RecordBatch]: ...


class Destination(Protocol):
    name: str

    def prepare(self, schema: TableSchema) -> None: ...
    def load(
        self,
        batches: pa.RecordBatchReader,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
        state: Callable[[], list[StateRecord]] | None = None,
        rejected: Callable[[], pa.Table | None] | None = None,
    ) -> LoadResult:
        """Load atomically; ``state()`` and ``rejected()``, called after the rows are in
        and before the commit, give the incremental state records and the quarantine
        records (``deltaflow.quarantine``) to commit with them."""
        ...


@runtime_checkable
class StatefulDestination(Destination, Protocol):
    """A transactional destination that keeps incremental state next to the table."""

    def read_states(self, prefix: str) -> list[StateRecord]: ...
    def write_state(self, record: StateRecord) -> None: ...
    def delete_states(self, prefix: str) -> int: ...
    def cursor_max(self, column: str) -> Any:
        """MAX(column) of the table; None when the table is missing or empty."""
        ...

    def rows_at_max(self, column: str, columns: list[str]) -> pa.Table | None:
        """``columns`` of the rows whose ``column`` is the table's largest; None when the
        table or a column is missing."""
        ...


@runtime_checkable
class ResumableSource(Source, Protocol):
    """A source whose splits can be read again, by a later run, from a token."""

    def resume_token(self) -> str:
        """After ``splits()``: what a later run needs to get the same splits."""
        ...

    def resume(self, token: str) -> bool:
        """Before ``splits()``: take up the splits of ``token``; False when it is stale
        (the source then plans new splits)."""
        ...


@dataclass
class RunResources:
    """What connectors share during one run: the pipeline's folder and open handles.

    Handles are keyed (e.g. by database file) so a source and a destination on the same
    DuckDB file use one database, and are all closed when the run ends.
    """

    base_dir: Path
    run_id: str
    options: SyncOptions = field(default_factory=lambda: _sync_options())
    handles: dict[str, Any] = field(default_factory=dict)
    closers: list[Any] = field(default_factory=list)

    def resolve(self, path: str) -> Path:
        """A path from config: absolute, or relative to the pipeline file."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def close(self) -> None:
        """Close every handle, newest first; a failing close does not skip the others."""
        failure: BaseException | None = None
        while self.closers:
            try:
                self.closers.pop()()
            except BaseException as exc:  # keep closing; report the first failure
                failure = failure or exc
        self.handles.clear()
        if failure is not None:
            raise failure


def _sync_options() -> SyncOptions:
    from deltaflow.sync.incremental import SyncOptions

    return SyncOptions()


def relay_failures(
    batches: pa.RecordBatchReader, failures: list[BaseException]
) -> pa.RecordBatchReader:
    """``batches``, noting in ``failures`` the exception it raises.

    A database that scans a reader reports a failing reader as its own error; with the
    original noted, a destination re-raises the source's error rather than a vague one.
    """
    import pyarrow as pa

    def relay() -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except BaseException as exc:
            failures.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(batches.schema, relay())


# --------------------------------------------------------------------------- incremental state

STATE_TABLE = "_deltaflow_state"


@dataclass(frozen=True)
class StateRecord:
    """One stream's incremental state, as kept in the destination's state table."""

    key: str  # pipeline_id/step_id/stream
    cursor: str
    watermark: str | None
    boundary: tuple[str, ...] = ()
    run_id: str = ""
    updated_at: str = ""


def state_table_sql(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (state_key VARCHAR PRIMARY KEY, cursor VARCHAR, "
        "watermark VARCHAR, boundary VARCHAR, run_id VARCHAR, updated_at VARCHAR)"
    )


def state_upsert_sql(table: str) -> str:
    """Parameters $1..$6: key, cursor, watermark, boundary (JSON list), run id, time."""
    return (
        f"INSERT INTO {table} (state_key, cursor, watermark, boundary, run_id, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (state_key) DO UPDATE SET "
        "cursor = excluded.cursor, watermark = excluded.watermark, "
        "boundary = excluded.boundary, run_id = excluded.run_id, "
        "updated_at = excluded.updated_at"
    )


def state_params(record: StateRecord) -> list[Any]:
    import datetime as dt
    import json

    return [
        record.key,
        record.cursor,
        record.watermark,
        json.dumps(sorted(record.boundary)),
        record.run_id,
        record.updated_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    ]


def state_from_row(row: tuple[Any, ...]) -> StateRecord:
    import json

    key, cursor, watermark, boundary, run_id, updated_at = row
    return StateRecord(
        key, cursor, watermark, tuple(json.loads(boundary or "[]")), run_id or "", updated_at or ""
    )


STATE_COLUMNS = "state_key, cursor, watermark, boundary, run_id, updated_at"


def conform_batch(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """A batch as a driver returns it, in the carrier types of ``target``: extension
    types (json, uuid) by their storage, other differences (numeric as text, ...) cast."""
    import pyarrow as pa

    columns = []
    for column, wanted in zip(batch.columns, target, strict=True):
        if isinstance(column.type, pa.BaseExtensionType):
            column = column.storage  # type: ignore[attr-defined]
        if not column.type.equals(wanted.type):
            column = column.cast(wanted.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=target)
