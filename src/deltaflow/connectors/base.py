"""The connector protocol: small interfaces every source and destination implements.

A source is bound to one stream: it describes its schema, cuts the work into splits and
reads a split as Arrow record batches. A destination is bound to one table: it creates or
evolves the table and loads a stream of batches atomically with the chosen write mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from deltaflow.errors import LoadError, SchemaError
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode
    from deltaflow.schema.types import TableSchema


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


class Source(Protocol):
    name: str

    def discover(self) -> TableSchema: ...
    def splits(self) -> list[Split]: ...
    def read(self, split: Split) -> Iterator[pa.RecordBatch]: ...


class Destination(Protocol):
    name: str

    def prepare(self, schema: TableSchema) -> None: ...
    def load(
        self, batches: pa.RecordBatchReader, write_mode: WriteMode, primary_key: tuple[str, ...]
    ) -> LoadResult: ...


@dataclass
class RunResources:
    """What connectors share during one run: the pipeline's folder and open handles.

    Handles are keyed (e.g. by database file) so a source and a destination on the same
    DuckDB file use one database, and are all closed when the run ends.
    """

    base_dir: Path
    run_id: str
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
