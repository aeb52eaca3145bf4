"""DuckDB: the embedded default warehouse, as source and destination.

Loads stream Arrow batches into DuckDB in one transaction per load, so a failed load
leaves the table as it was:

- ``append``  inserts into the table;
- ``replace`` builds the new table beside the old one and swaps them in the same
  transaction: readers see the old table or the new one, never a missing or partial one;
- ``merge``   stages the batches, keeps the last row per primary key, deletes the
  matching rows and inserts the staged ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.connectors._common import (
    STATE_COLUMNS,
    STATE_TABLE,
    check_merge_keys,
    quoted,
    relay_failures,
    state_from_row,
    state_params,
    state_table_sql,
    state_upsert_sql,
)
from deltaflow.connectors.protocol import (
    CursorWindow,
    LoadResult,
    RunResources,
    Split,
    StateRecord,
    bind_placeholders,
    has_placeholders,
    split_table,
)
from deltaflow.errors import (
    DestinationError,
    LoadError,
    SourceError,
    UnsupportedTypeError,
)
from deltaflow.faults import crash_point
from deltaflow.schema.mappings import duckdb_type, quote_double
from deltaflow.schema.types import TableSchema

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from deltaflow.config.connections import DuckDBConnection, WriteMode
    from deltaflow.config.models import DestinationSpec, SourceSpec

STAGING_PREFIX = "__deltaflow_"

#: Rows per INSERT statement. DuckDB keeps a statement's Arrow input alive until the
#: statement ends, so one statement per load would hold the whole load in memory; chunks
#: of this size keep memory flat. All chunks of a load share one transaction.
INSERT_CHUNK_ROWS = 1 << 19

#: DuckDB types whose Arrow export loses or changes values, and what goes wrong.
LOSSY_TYPES = {
    "UHUGEINT": "values above 2^127 wrap around",
    "TIME WITH TIME ZONE": "the offset is dropped",
    "TIMETZ": "the offset is dropped",
    "VARINT": "it arrives as raw bytes",
    "BIGNUM": "it arrives as raw bytes",
    "BIT": "it arrives as raw bytes",
    "BITSTRING": "it arrives as raw bytes",
}


def connect(conn: DuckDBConnection, resources: RunResources) -> duckdb.DuckDBPyConnection:
    """The run's connection to this database file, opened once and shared."""
    import duckdb

    path = conn.path if conn.path == ":memory:" else str(resources.resolve(conn.path))
    key = f"duckdb:{path}"
    if key not in resources.handles:
        # Without this, a missing table name is looked up among the calling Python frames'
        # variables (DuckDB's replacement scans) instead of failing as a missing table.
        config: dict[str, Any] = {"python_enable_replacements": False}
        if conn.memory_limit:
            config["memory_limit"] = conn.memory_limit
        if conn.threads:
            config["threads"] = conn.threads
        try:
            if path != ":memory:":
                resources.resolve(conn.path).parent.mkdir(parents=True, exist_ok=True)
            handle = duckdb.connect(path, config=config)
        except (duckdb.Error, OSError) as exc:
            raise DestinationError(
                f"cannot open DuckDB database '{conn.path}': {exc}",
                hint="check the path; another process may hold the file open",
            ) from exc
        resources.handles[key] = handle
        resources.closers.append(handle.close)
    shared: duckdb.DuckDBPyConnection = resources.handles[key]
    return shared


def qualified(name: str) -> tuple[str, str]:
    """``a.b`` -> ("a", "b"); a bare name lives in schema ``main``."""
    return split_table(name, "main")


# --------------------------------------------------------------------------- source


class DuckDBSource:
    def __init__(self, db: duckdb.DuckDBPyConnection, spec: SourceSpec, batch_size: int):
        self.db = db
        self.spec = spec
        self.batch_size = batch_size
        self.name = spec.stream or (spec.table or "query").split(".")[-1]
        self.window: CursorWindow | None = None
        self.schema: TableSchema | None = None

    def restrict(self, window: CursorWindow) -> None:
        """Read only the rows of this cursor window (and those with a NULL cursor)."""
        self.window = window

    def sql(self) -> str:
        """The table, or the query as a subquery, with ``columns`` and ``where`` applied."""
        spec = self.spec
        cols = ", ".join(quote_double(c) for c in spec.columns) if spec.columns else "*"
        conditions = [f"({spec.where})"] if spec.where else []
        column = self.schema.column(self.window.cursor) if self.schema and self.window else None
        if self.window and column and not has_placeholders(spec.query):
            conditions.append(
                self.window.predicate(quote_double(column.name), column.type.kind, column.type.tz)
            )
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        if spec.query:
            # Newlines: a query ending in a -- comment must not comment out the ')'.
            query = spec.query.strip().rstrip(";").rstrip()
            return f"SELECT {cols} FROM (\n{query}\n) AS q{where}"
        assert spec.table is not None
        return f"SELECT {cols} FROM {quoted(*qualified(spec.table))}{where}"

    def _params(self) -> list[Any]:
        if not has_placeholders(self.spec.query):
            return []
        if self.window is None:
            raise SourceError(
                f"the query of stream '{self.name}' uses {{start_timestamp}}/{{end_timestamp}}, "
                "which only an incremental step fills in",
                hint="add 'incremental: {cursor: <column>}' to the step",
            )
        return bind_placeholders(self.spec.query or "", self.window.placeholder_values())[1]

    def _bound_sql(self, sql: str) -> str:
        return bind_placeholders(sql, {"start_timestamp": None, "end_timestamp": None})[0]

    def discover(self) -> TableSchema:
        self._check_types()
        reader = self._execute(f"SELECT * FROM (\n{self.sql()}\n) LIMIT 0")
        # The key spelled as the stream spells it; none when 'columns' left part of it out.
        names = {name.lower(): name for name in reader.schema.names}
        key = tuple(names.get(k.lower(), "") for k in self._primary_key())
        self.schema = TableSchema.from_arrow(reader.schema, key if all(key) else ())
        return self.schema

    def _check_types(self) -> None:
        """Refuse the DuckDB types whose Arrow form would change their values."""
        import duckdb

        try:
            sql = f"DESCRIBE (\n{self._bound_sql(self.sql())}\n)"
            described = self.db.cursor().sql(sql, params=self._params() or None).fetchall()
        except duckdb.Error as exc:
            raise SourceError(
                f"DuckDB source '{self.name}' failed: {exc}",
                hint="check the table name, columns and SQL",
            ) from exc
        for name, dtype, *_ in described:
            lossy = next((t for t in LOSSY_TYPES if t in str(dtype).upper()), None)
            if lossy:
                raise UnsupportedTypeError(
                    f"column {name} of stream '{self.name}' is DuckDB {dtype}, which would "
                    f"not arrive intact ({LOSSY_TYPES[lossy]})",
                    hint=f"read it with a query that casts it, e.g. {name}::VARCHAR",
                )

    def splits(self) -> list[Split]:
        return [Split(0)]

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        import duckdb

        reader = self._execute(self.sql())
        try:
            yield from reader
        except (OSError, duckdb.Error) as exc:  # errors while streaming reach us as OSError
            raise SourceError(
                f"DuckDB source '{self.name}' failed while reading: {exc}",
                hint="check the SQL and the values it converts",
            ) from exc

    def _execute(self, sql: str) -> pa.RecordBatchReader:
        import duckdb

        try:
            relation = self.db.cursor().sql(self._bound_sql(sql), params=self._params() or None)
            return relation.to_arrow_reader(self.batch_size)
        except duckdb.Error as exc:
            raise SourceError(
                f"DuckDB source '{self.name}' failed: {exc}",
                hint="check the table name, columns and SQL",
            ) from exc

    def _primary_key(self) -> tuple[str, ...]:
        if not self.spec.table:
            return ()
        schema, table = qualified(self.spec.table)
        rows = (
            self.db.cursor()
            .execute(
                "SELECT constraint_column_names FROM duckdb_constraints() "
                "WHERE lower(schema_name) = lower(?) AND lower(table_name) = lower(?) "
                "AND constraint_type = 'PRIMARY KEY'",
                [schema, table],
            )
            .fetchall()
        )
        return tuple(rows[0][0]) if rows else ()


# --------------------------------------------------------------------------- destination


class DuckDBDestination:
    def __init__(self, db: duckdb.DuckDBPyConnection, table: str):
        self.db = db
        self.schema_name, self.table = qualified(table)
        self.name = table
        self.target = quoted(self.schema_name, self.table)

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
        """Create the table, or add the columns the source has and the table lacks."""
        cur = self.db.cursor()
        existing = self.columns()
        if not existing:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_double(self.schema_name)}")
            cur.execute(self._create_sql(self.target, schema))
            return
        present = {name.lower() for name in existing}  # DuckDB names are case-insensitive
        for column in schema.columns:
            if column.name.lower() not in present:
                cur.execute(
                    f"ALTER TABLE {self.target} ADD COLUMN "
                    f"{quote_double(column.name)} {duckdb_type(column.type)}"
                )

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
                self._put_state(cur, record)
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

    # Incremental state, in a table next to the destination table.

    def _state_table(self) -> str:
        return quoted(self.schema_name, STATE_TABLE)

    def _put_state(self, cur: duckdb.DuckDBPyConnection, record: StateRecord) -> None:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_double(self.schema_name)}")
        cur.execute(state_table_sql(self._state_table()))
        cur.execute(state_upsert_sql(self._state_table()), state_params(record))

    def _has(self, table: str) -> bool:
        found = self.db.cursor().execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = $1 AND table_name = $2",
            [self.schema_name, table],
        )
        return bool((found.fetchone() or (0,))[0])

    def read_states(self, prefix: str) -> list[StateRecord]:
        if not self._has(STATE_TABLE):
            return []
        rows = (
            self.db.cursor()
            .execute(
                f"SELECT {STATE_COLUMNS} FROM {self._state_table()} "
                "WHERE starts_with(state_key, $1) ORDER BY state_key",
                [prefix],
            )
            .fetchall()
        )
        return [state_from_row(row) for row in rows]

    def write_state(self, record: StateRecord) -> None:
        cur = self.db.cursor()
        cur.execute("BEGIN TRANSACTION")
        self._put_state(cur, record)
        cur.execute("COMMIT")

    def delete_states(self, prefix: str) -> int:
        if not self._has(STATE_TABLE):
            return 0
        sql = f"DELETE FROM {self._state_table()} WHERE starts_with(state_key, $1)"
        return scalar(self.db.cursor(), sql, [prefix])

    def cursor_max(self, column: str) -> Any:
        if not self._has(self.table) or column not in self.columns():
            return None
        # Through Arrow: DuckDB's own Python conversion of TIMESTAMPTZ needs pytz.
        sql = f"SELECT max({quote_double(column)}) FROM {self.target}"
        return self.db.cursor().execute(sql).to_arrow_table().column(0)[0].as_py()

    def rows_at_max(self, column: str, columns: list[str]) -> pa.Table | None:
        if not self._has(self.table) or not {column, *columns} <= set(self.columns()):
            return None
        c = quote_double(column)
        select = ", ".join(quote_double(n) for n in columns)
        sql = f"SELECT {select} FROM {self.target} WHERE {c} = (SELECT max({c}) FROM {self.target})"
        return self.db.cursor().execute(sql).to_arrow_table()

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


def scalar(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> int:
    """The first value of the statement's first row, as an integer (0 without rows)."""
    row = cur.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- factories


def open_source(
    conn: DuckDBConnection,
    spec: SourceSpec,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> DuckDBSource:
    """DuckDB parallelises a query itself: one split whatever ``parallelism``."""
    return DuckDBSource(connect(conn, resources), spec, batch_size)


def open_destination(
    conn: DuckDBConnection, spec: DestinationSpec, resources: RunResources
) -> DuckDBDestination:
    assert spec.table is not None
    return DuckDBDestination(connect(conn, resources), spec.table)


def query(
    conn: DuckDBConnection, resources: RunResources, sql: str, timeout: float | None = None
) -> pa.Table:
    """Run one read-only query (quality checks, metrics) and return its rows; past
    ``timeout`` seconds the query is interrupted."""
    import threading

    cursor = connect(conn, resources).cursor()
    timer = threading.Timer(timeout, cursor.interrupt) if timeout else None
    try:
        if timer is not None:
            timer.start()
        table: pa.Table = cursor.execute(sql).to_arrow_table()
    finally:
        if timer is not None:
            timer.cancel()
        cursor.close()
    return table


def execute(conn: DuckDBConnection, resources: RunResources, sql: str) -> None:
    """Run one statement that changes data (quarantine purge and replay), committed."""
    cursor = connect(conn, resources).cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()
