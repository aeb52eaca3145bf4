"""What the connectors share, written once: table naming, merge-key checks, relaying a
reader's failure, conforming driver batches, a statement's single value.

The state table's rows (``STATE_TABLE``, ``state_params``, ...) are written in
``_sql.state`` and the schema-change error in ``deltaflow.schema.evolution``; they are
re-exported here for the connectors that import them from this module.

Private to ``deltaflow.connectors``: layers above use ``protocol`` and ``registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from deltaflow.connectors._sql.state import (
    STATE_COLUMNS,
    STATE_TABLE,
    state_from_row,
    state_params,
)
from deltaflow.errors import Code, LoadError
from deltaflow.schema.evolution import schema_change_error
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.schema.evolution import Change

__all__ = [
    "STATE_COLUMNS",
    "STATE_TABLE",
    "check_merge_keys",
    "conform_batch",
    "quoted",
    "relay_failures",
    "scalar",
    "schema_change_error",
    "state_from_row",
    "state_params",
]


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
            code=Code.LOAD_NO_PRIMARY_KEY,
        )
    nulls = count_nulls(" OR ".join(f"{quote_double(k)} IS NULL" for k in primary_key))
    if nulls:
        keys = ", ".join(quote_double(k) for k in primary_key)
        raise LoadError(
            f"{nulls} rows have NULL in the primary key ({keys}) of {table}",
            hint="merge needs a complete primary key; filter or fix those rows",
            code=Code.LOAD_NULL_PRIMARY_KEY,
        )


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


def scalar(cur: Any, sql: str, params: list[Any] | None = None) -> int:
    """The first value of the statement's first row, as an integer (0 without rows), on a
    cursor whose ``execute`` returns itself (DuckDB's)."""
    row = cur.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def alter_sql(target: str, change: Change) -> str:
    """The standard SQL of one schema change (DuckDB and PostgreSQL): add a column, or
    change its type."""
    column = quote_double(change.column)
    if change.action == "add":
        return f"ALTER TABLE {target} ADD COLUMN {column} {change.sql_type}"
    return f"ALTER TABLE {target} ALTER COLUMN {column} TYPE {change.sql_type}"
