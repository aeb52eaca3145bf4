"""Loading Arrow batches into a DuckDB table, one transaction per load.

- ``append``  inserts into the table;
- ``replace`` builds the new table beside the old one and swaps them in the same
  transaction: readers see the old table or the new one, never a missing or partial one;
- ``merge``   stages the batches, keeps the last row per primary key, deletes the
  matching rows and inserts the staged ones.

The table's schema evolves as ``destination.on_schema_change`` says (see
``deltaflow.schema.evolution``); the incremental state lives next to the table
(``deltaflow.connectors._sql.state``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.connectors._common import alter_sql, check_merge_keys, quoted, relay_failures, scalar
from deltaflow.connectors._sql.state import STATE_TABLE, StateTable
from deltaflow.connectors.duckdb.client import qualified
from deltaflow.connectors.duckdb.types import EVOLUTION
from deltaflow.connectors.protocol import LoadResult, StateRecord
from deltaflow.errors import LoadError
from deltaflow.faults import crash_point
from deltaflow.schema.evolution import Policy, plan_changes
from deltaflow.schema.mappings import duckdb_type, quote_double
from deltaflow.schema.types import TableSchema

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode

STAGING_PREFIX = "__deltaflow_"

#: Rows per INSERT statement. DuckDB keeps a statement's Arrow input alive until the
#: statement ends, so one statement per load would hold the whole load in memory; chunks
#: of this size keep memory flat. All chunks of a load share one transaction.
INSERT_CHUNK_ROWS = 1 << 19


class CursorSession:
    """A DuckDB cursor as the state table's ``Session``."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection):
        self.cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.cursor.execute(sql, list(params) or None)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.cursor.execute(sql, list(params) or None).fetchall()

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # Through Arrow: DuckDB's own Python conversion of TIMESTAMPTZ needs pytz.
        table = self.cursor.execute(sql, list(params) or None).to_arrow_table()
        return table.column(0)[0].as_py()

    def arrow(self, sql: str) -> pa.Table:
        return self.cursor.execute(sql).to_arrow_table()


class DuckDBDestination(StateTable[CursorSession]):
    """One table of a DuckDB database."""

    def __init__(
        self, db: duckdb.DuckDBPyConnection, table: str, on_schema_change: Policy = "evolve"
    ):
        self.db = db
        self.schema_name, self.table = qualified(table)
        self.name = table
        self.target = quoted(self.schema_name, self.table)
        self.on_schema_change = on_schema_change

    def columns(self) -> dict[str, str]:
        """Existing columns and their DuckDB types (empty when the table does not exist)."""
        rows = (
            self.db.cursor()
            .execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?) "
                "ORDER BY ordinal_position",
                [self.schema_name, self.table],
            )
            .fetchall()
        )
        return dict(rows)

    def prepare(self, schema: TableSchema) -> None:
        """Create the table, or evolve it to the schema as ``on_schema_change`` allows: add
        the columns the source has and the table lacks, widen those that are too narrow."""
        cur = self.db.cursor()
        existing = self.columns()
        if not existing:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_double(self.schema_name)}")
            cur.execute(self._create_sql(self.target, schema))
            return
        for change in plan_changes(self.name, existing, schema, self.on_schema_change, EVOLUTION):
            cur.execute(alter_sql(self.target, change))

    def load(
        self,
        batches: pa.RecordBatchReader,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
        state: Callable[[], list[StateRecord]] | None = None,
        rejected: Callable[[], pa.Table | None] | None = None,
    ) -> LoadResult:
        import duckdb

        cur = self.db.cursor()
        upstream: list[BaseException] = []
        scannable = relay_failures(_scannable(batches), upstream)
        cur.execute("BEGIN TRANSACTION")
        try:
            incoming = TableSchema.from_arrow(batches.schema)
            details = _APPLY[write_mode](self, cur, scannable, incoming, primary_key)
            for record in state() if state else []:
                self._put_state(CursorSession(cur), record)
            held = rejected() if rejected else None
            if held is not None:
                self._quarantine(cur, held)
            crash_point("after_load_before_commit")
            cur.execute("COMMIT")
            crash_point("after_commit")
        except BaseException as exc:
            cur.execute("ROLLBACK")
            if upstream:  # the batches failed (e.g. a source error): DuckDB only relayed it
                raise upstream[0] from None
            if isinstance(exc, duckdb.Error):
                raise LoadError(
                    f"loading into DuckDB table {self.name} failed: {exc}",
                    hint="check that the source columns fit the table's types",
                ) from exc
            raise
        (count,) = cur.execute(f"SELECT count(*) FROM {self.target}").fetchone() or (0,)
        rows = details.pop("rows_loaded")
        if held is None:
            return LoadResult(rows, int(count), details)
        where = {"quarantine_table": f"{self.schema_name}.{self.table}{quarantine.SUFFIX}"}
        return LoadResult(rows, int(count), details | where, held.num_rows)

    def _quarantine(self, cur: Any, records: pa.Table) -> None:
        """Add quarantine records to the table's quarantine table, in the transaction."""
        target = quoted(self.schema_name, f"{self.table}{quarantine.SUFFIX}")
        cur.register("__deltaflow_quarantine", records)
        try:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {target} AS "
                "SELECT * FROM __deltaflow_quarantine LIMIT 0"
            )
            cur.execute(f"INSERT INTO {target} SELECT * FROM __deltaflow_quarantine")
        finally:
            cur.unregister("__deltaflow_quarantine")

    # The state table's hooks (see StateTable).

    @contextmanager
    def _session(self, write: bool) -> Iterator[CursorSession]:
        cur = self.db.cursor()
        if not write:
            yield CursorSession(cur)
            return
        cur.execute("BEGIN TRANSACTION")
        try:
            yield CursorSession(cur)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def _state_table(self) -> str:
        return quoted(self.schema_name, STATE_TABLE)

    def _ensure_state_table(self, session: CursorSession) -> None:
        session.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_double(self.schema_name)}")
        super()._ensure_state_table(session)

    def _has_state_table(self, session: CursorSession) -> bool:
        return self._has(session, STATE_TABLE)

    def _column_names(self, session: CursorSession) -> Collection[str]:
        return self.columns() if self._has(session, self.table) else ()

    def _has(self, session: CursorSession, table: str) -> bool:
        found = session.value(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = $1 AND table_name = $2",
            [self.schema_name, table],
        )
        return bool(found)

    # Each write mode runs inside the load's transaction and returns its counts.

    def _append(
        self,
        cur: duckdb.DuckDBPyConnection,
        batches: pa.RecordBatchReader,
        incoming: TableSchema,
        primary_key: tuple[str, ...],
    ) -> dict[str, int]:
        return {"rows_loaded": self._insert(cur, self.target, batches)}

    def _replace(
        self,
        cur: duckdb.DuckDBPyConnection,
        batches: pa.RecordBatchReader,
        incoming: TableSchema,
        primary_key: tuple[str, ...],
    ) -> dict[str, int]:
        staged = self._staging_table()
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_double(self.schema_name)}")
        cur.execute(self._create_sql(staged, incoming))
        rows = self._insert(cur, staged, batches)
        cur.execute(f"DROP TABLE IF EXISTS {self.target}")  # absent when prepare was skipped
        cur.execute(f"ALTER TABLE {staged} RENAME TO {quote_double(self.table)}")
        return {"rows_loaded": rows}

    def _merge(
        self,
        cur: duckdb.DuckDBPyConnection,
        batches: pa.RecordBatchReader,
        incoming: TableSchema,
        primary_key: tuple[str, ...],
    ) -> dict[str, int]:
        staged = self._staging_table()
        keys = ", ".join(quote_double(k) for k in primary_key)
        cur.execute(f"CREATE TABLE {staged} AS SELECT * FROM {self.target} LIMIT 0")
        staged_rows = self._insert(cur, staged, batches)
        check_merge_keys(
            self.name,
            primary_key,
            lambda where: scalar(cur, f"SELECT count(*) FROM {staged} WHERE {where}"),
        )
        # Keep the last row of each key (rowid follows arrival order), then swap the keys.
        cur.execute(
            f"DELETE FROM {staged} WHERE rowid NOT IN "
            f"(SELECT max(rowid) FROM {staged} GROUP BY {keys})"
        )
        distinct = scalar(cur, f"SELECT count(*) FROM {staged}")
        match = " AND ".join(f"t.{quote_double(k)} = s.{quote_double(k)}" for k in primary_key)
        exists = f"EXISTS (SELECT 1 FROM {staged} s WHERE {match})"
        # Keys of this load that already exist, counted once each (even if the table holds
        # a key twice after earlier appends).
        updated = scalar(
            cur,
            f"SELECT count(*) FROM {staged} s WHERE EXISTS "
            f"(SELECT 1 FROM {self.target} t WHERE {match})",
        )
        cur.execute(f"DELETE FROM {self.target} t WHERE {exists}")
        cur.execute(f"INSERT INTO {self.target} BY NAME SELECT * FROM {staged}")
        cur.execute(f"DROP TABLE {staged}")
        inserted = distinct
        return {
            "rows_loaded": staged_rows,
            "inserted": inserted - updated,
            "updated": updated,
            "duplicates_in_batch": staged_rows - inserted,
        }

    def _staging_table(self) -> str:
        return quoted(self.schema_name, f"{STAGING_PREFIX}{self.table}_{uuid.uuid4().hex[:8]}")

    def _insert(
        self, cur: duckdb.DuckDBPyConnection, table: str, batches: pa.RecordBatchReader
    ) -> int:
        """Insert every batch, a chunk per statement (see INSERT_CHUNK_ROWS).

        One stream cannot be scanned in parallel, and more DuckDB threads only contend for
        the GIL with the threads producing it (5M PostgreSQL rows: 27 s with 2 threads,
        21-24 s with 1, on 2 cores), so the inserts run on one thread.
        """
        rows = 0
        threads = scalar(cur, "SELECT current_setting('threads')")
        cur.execute("SET threads = 1")
        try:
            for chunk in _chunks(batches, INSERT_CHUNK_ROWS):
                view = f"{STAGING_PREFIX}src_{uuid.uuid4().hex[:12]}"
                cur.register(view, chunk)
                try:
                    sql = f"INSERT INTO {table} BY NAME SELECT * FROM {quote_double(view)}"
                    rows += scalar(cur, sql)
                finally:
                    cur.unregister(view)
        finally:
            cur.execute(f"SET threads = {int(threads)}")
        return rows

    def _create_sql(self, target: str, schema: TableSchema) -> str:
        columns = ", ".join(f"{quote_double(c.name)} {duckdb_type(c.type)}" for c in schema.columns)
        return f"CREATE TABLE {target} ({columns})"


_APPLY = {
    "append": DuckDBDestination._append,
    "replace": DuckDBDestination._replace,
    "merge": DuckDBDestination._merge,
}


def _chunks(batches: pa.RecordBatchReader, max_rows: int) -> Iterator[pa.RecordBatchReader]:
    """Consecutive readers over ``batches``, each of about ``max_rows`` rows."""
    import pyarrow as pa

    source = iter(batches)
    pending = next(source, None)
    while pending is not None:

        def take(head: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
            rows = 0
            batch: pa.RecordBatch | None = head
            while batch is not None:
                yield batch
                rows += batch.num_rows
                if rows >= max_rows:
                    return
                batch = next(source, None)

        yield pa.RecordBatchReader.from_batches(batches.schema, take(pending))
        pending = next(source, None)


def _scannable(batches: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """Batches DuckDB can scan: decimals wider than 38 digits (stored as VARCHAR, see
    ``deltaflow.schema.mappings``) become their exact text, which DuckDB cannot do itself."""
    import pyarrow as pa

    def scannable(dtype: pa.DataType) -> pa.DataType:
        if pa.types.is_decimal(dtype) and dtype.precision > 38:
            return pa.string()
        if pa.types.is_list(dtype):
            return pa.list_(dtype.value_field.with_type(scannable(dtype.value_type)))
        if pa.types.is_struct(dtype):
            return pa.struct([f.with_type(scannable(f.type)) for f in dtype])
        return dtype

    schema = pa.schema([f.with_type(scannable(f.type)) for f in batches.schema])
    if schema.equals(batches.schema):
        return batches
    return pa.RecordBatchReader.from_batches(schema, (b.cast(schema) for b in batches))
