"""What the connectors share, written once: table naming, merge-key checks, the state
table's SQL, relaying a reader's failure, conforming driver batches.

Private to ``deltaflow.connectors``: layers above use ``protocol`` and ``registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.protocol import StateRecord
from deltaflow.errors import LoadError, SchemaError
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa


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
