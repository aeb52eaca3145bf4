"""The connector protocol: the small interfaces every connector implements, and the
abilities a connector may add.

A source is bound to one stream: it describes its schema, cuts the work into splits and
reads a split as Arrow record batches. A destination is bound to one table: it creates or
evolves the table and loads a stream of batches atomically with the chosen write mode.
Optional abilities are separate small protocols, checked with ``isinstance``:

- ``WindowedSource``: pushes the incremental window (``CursorWindow``) into its read.
- ``RejectingSource``: hands over the records it could not convert, for quarantine.
- ``ResumableSource``: a later run can read the same splits again.
- ``StatefulDestination``: keeps incremental state next to the table, in its transaction.
- ``Warehouse``: runs SQL (quality checks, metrics, reconciliation, quarantine) and says
  what its SQL looks like (sqlglot dialect, default schema, quoting, fingerprints).

This module sits at the bottom of ``connectors``: it imports nothing from the layers
above it (sync, quality, metrics, orchestration), which import it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from deltaflow.config.options import SyncOptions
from deltaflow.errors import SchemaError

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode
    from deltaflow.schema.types import TableSchema

__all__ = [
    "CursorWindow",
    "Destination",
    "LoadResult",
    "RejectingSource",
    "ResumableSource",
    "RunResources",
    "Source",
    "Split",
    "StateRecord",
    "StatefulDestination",
    "SyncOptions",
    "Warehouse",
    "WindowedSource",
    "bind_placeholders",
    "encode",
    "has_placeholders",
    "split_table",
]

UTC = dt.UTC
EPOCH_START = dt.datetime(1900, 1, 1, tzinfo=UTC)


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
    options: SyncOptions = field(default_factory=SyncOptions)
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


@dataclass(frozen=True)
class StateRecord:
    """One stream's incremental state, as kept in the destination's state table."""

    key: str  # pipeline_id/step_id/stream
    cursor: str
    watermark: str | None
    boundary: tuple[str, ...] = ()
    run_id: str = ""
    updated_at: str = ""


# --------------------------------------------------------------------------- the window


def encode(value: Any) -> str | None:
    """A cursor value as stored: ISO 8601 UTC with microseconds, the integer, or the
    ObjectId's 24 hex digits."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return str(int(value))


PLACEHOLDERS = ("start_timestamp", "end_timestamp")
_FAR = {
    "timestamp": (EPOCH_START, dt.datetime(9999, 12, 31, tzinfo=UTC)),
    "integer": (-(2**63), 2**63 - 1),
    "objectid": ("0" * 24, "f" * 24),
}


@dataclass(frozen=True)
class CursorWindow:
    """The window a source is asked to read, for pushing it down into its SQL."""

    cursor: str
    cursor_type: str
    start: Any
    end: Any
    timezone: str

    def predicate(self, column_sql: str, kind: str, tz: str | None) -> str:
        """``(c >= lo AND c < hi) OR c IS NULL`` with literals typed like the column
        (``kind``/``tz`` of its logical type). The values are ours (a datetime or an int,
        never text from config), so they can be written as literals."""
        parts = []
        for op, bound in ((">=", self.start), ("<", self.end)):
            if bound is not None:
                parts.append(f"{column_sql} {op} {self._literal(bound, kind, tz)}")
        inside = " AND ".join(parts) or "TRUE"
        return f"(({inside}) OR {column_sql} IS NULL)"

    def _literal(self, value: Any, kind: str, tz: str | None) -> str:
        if isinstance(value, str):  # an ObjectId's hex digits (checked by decode)
            return f"'{value}'"
        if not isinstance(value, dt.datetime):
            return str(int(value))
        if kind == "date":
            local = value.astimezone(zoneinfo.ZoneInfo(self.timezone))
            return f"CAST('{local.date().isoformat()}' AS DATE)"
        if kind == "timestamp" and not tz:
            local = value.astimezone(zoneinfo.ZoneInfo(self.timezone)).replace(tzinfo=None)
            return f"CAST('{local.isoformat(timespec='microseconds')}' AS TIMESTAMP)"
        return f"CAST('{encode(value)}' AS TIMESTAMP WITH TIME ZONE)"

    def placeholder_values(self) -> dict[str, Any]:
        """``{start_timestamp}``/``{end_timestamp}`` of a custom query, bound as parameters;
        an open side becomes a far bound (1900-01-01 / 9999-12-31, or the int64 range)."""
        low, high = _FAR[self.cursor_type]
        return {
            "start_timestamp": low if self.start is None else self.start,
            "end_timestamp": high if self.end is None else self.end,
        }


def bind_placeholders(query: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """``{start_timestamp}`` -> ``$1`` and so on, with the values in parameter order."""
    params: list[Any] = []
    for name in PLACEHOLDERS:
        token = "{" + name + "}"
        if token in query:
            params.append(values[name])
            query = query.replace(token, f"${len(params)}")
    return query, params


def has_placeholders(query: str | None) -> bool:
    return bool(query) and any("{" + name + "}" in (query or "") for name in PLACEHOLDERS)


# --------------------------------------------------------------------------- abilities


@runtime_checkable
class WindowedSource(Source, Protocol):
    """A source that reads only the incremental window, pushed into its query."""

    def restrict(self, window: CursorWindow) -> None:
        """Before ``splits()``: read only the rows of ``window`` (and NULL cursors)."""
        ...


@runtime_checkable
class RejectingSource(Source, Protocol):
    """A source that leaves out records it cannot convert and hands them over."""

    def take_rejected(self, run_id: str) -> pa.Table | None:
        """Quarantine records (``deltaflow.quarantine``) of what was left out so far, then
        forget them; None when there are none."""
        ...


@runtime_checkable
class Warehouse(Protocol):
    """A database that runs SQL for the steps that work inside it (quality checks,
    metrics, reconciliation, quarantine management).

    What differs between engines is asked of the warehouse, never branched on by name.
    """

    kind: str
    """The connection type, e.g. ``duckdb``."""
    dialect: str
    """The sqlglot dialect its SQL is written in."""
    default_schema: str
    """Where a table named without a schema (or dataset) lives."""

    def quote(self, name: str) -> str:
        """An identifier quoted for this engine."""
        ...

    def table_ref(self, table: str) -> str:
        """``schema.table`` (or a bare name, in the default schema) quoted for this engine."""
        ...

    def query(self, sql: str, timeout: float | None = None) -> pa.Table:
        """Run one read-only query and return its rows; past ``timeout`` seconds the
        engine stops it."""
        ...

    def execute(self, sql: str) -> None:
        """Run one statement that changes data, committed."""
        ...

    def text_sql(self, column: str, dtype: pa.DataType) -> str:
        """SQL for the canonical text of a column's value (the same text on every engine
        for the same value), NULL as ``\\N``: what fingerprints are computed over."""
        ...

    def hash28_sql(self, text: str) -> str:
        """SQL for the first 7 hex digits of md5(``text``) as a non-negative integer."""
        ...

    def int_div_sql(self, left: str, right: str) -> str:
        """SQL for the integer quotient of two integer expressions."""
        ...
