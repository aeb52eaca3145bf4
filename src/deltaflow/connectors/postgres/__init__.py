"""PostgreSQL, as source and destination.

Reads stream Arrow record batches straight from the server through the ADBC PostgreSQL
driver (binary COPY decoded to Arrow in C). A table is read as ctid ranges, each range
on its own connection inside one exported snapshot, so parallel splits see one
consistent state of the table.

Loads run in one transaction with binary COPY (ADBC bulk ingest). ``append`` and
``replace`` (which truncates first; readers wait for the commit and then see the new rows)
COPY straight into the target when every column's Arrow type has the binary form of the
target column's type; otherwise, and always for ``merge``, the batches go to a temporary
staging table and are cast into the target, ``merge`` inserting with ``ON CONFLICT
(primary key) DO UPDATE``. Every identifier is quoted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from deltaflow import quarantine
from deltaflow.config.secrets import redact, remember
from deltaflow.connectors._common import (
    STATE_COLUMNS,
    STATE_TABLE,
    check_merge_keys,
    conform_batch,
    quoted,
    relay_failures,
    schema_change_error,
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
    ConnectionFailedError,
    LoadError,
    SchemaError,
    SourceError,
    did_you_mean,
)
from deltaflow.faults import crash_point
from deltaflow.schema.mappings import postgres_logical, postgres_type, quote_double, quote_single
from deltaflow.schema.types import Column, LogicalType, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import PostgresConnection, WriteMode
    from deltaflow.config.models import DestinationSpec, IndexSpec, SourceSpec

log = logging.getLogger("deltaflow.postgres")

STAGING_PREFIX = "__deltaflow_"


def secret_uri(conn: PostgresConnection) -> str:
    """The connection's libpq URI, its password remembered as secret (see redact)."""
    uri = conn.uri()
    password = urlsplit(uri).password
    if password:
        remember(password)
    return uri


def connect(conn: PostgresConnection) -> Any:
    """A new ADBC connection (transactions on); its password is remembered as secret."""
    from adbc_driver_postgresql import dbapi

    uri = secret_uri(conn)
    try:
        return dbapi.connect(uri)
    except Exception as exc:
        raise ConnectionFailedError(
            f"cannot connect to PostgreSQL at {conn.host}:{conn.port}: {exc}",
            hint="check host, port, database, user and password, and that the server runs",
        ) from exc


def qualified(name: str) -> tuple[str, str]:
    """``a.b`` -> ("a", "b"); a bare name lives in schema ``public``."""
    return split_table(name, "public")


# --------------------------------------------------------------------------- catalog

_COLUMNS_SQL = """
SELECT a.attname, a.attnotnull, a.atttypmod, t.typname, t.typtype, t.typcategory,
       coalesce(bt.typname, ''), coalesce(et.typname, ''), coalesce(ebt.typname, ''),
       coalesce(et.typtype, ''), format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
LEFT JOIN pg_type et ON et.oid = coalesce(nullif(bt.typelem, 0), t.typelem)
     AND coalesce(bt.typcategory, t.typcategory) = 'A'
LEFT JOIN pg_type ebt ON ebt.oid = et.typbasetype AND et.typtype = 'd'
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_PRIMARY_KEY_SQL = """
SELECT a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
ORDER BY k.ord
"""


@dataclass(frozen=True)
class PgColumn:
    """A column as the catalog describes it, and how to read it."""

    name: str
    logical: LogicalType
    nullable: bool
    pg_type: str  # format_type(), e.g. 'numeric(12,2)'
    read_as: str | None  # a cast applied when reading ('text' for types Arrow cannot carry)


def _column(row: tuple[Any, ...]) -> PgColumn:
    (
        name,
        notnull,
        typmod,
        typname,
        typtype,
        category,
        base,
        elem,
        elem_base,
        elem_typtype,
        formatted,
    ) = row
    scalar = base or typname
    if typtype == "e":
        logical: LogicalType | None = LogicalType("string")
    elif (category == "A" or elem) and elem:
        item = _scalar_logical(elem_base or elem, elem_typtype, typmod)
        logical = LogicalType("list", item=item) if item else None
    else:
        logical = postgres_logical(scalar, typmod)
    if logical is None:
        log.warning(
            "column %s: PostgreSQL type %s has no logical type; reading it as text", name, formatted
        )
    read_as = None  # ADBC carries the type as is
    if logical is None or logical.kind == "uuid" or scalar == "bpchar":
        read_as = "text"  # bpchar: without its pad spaces, as PostgreSQL casts it
    elif (
        logical.kind == "list"
        and logical.item is not None
        and (logical.item.kind == "uuid" or elem_typtype == "e")
    ):
        read_as = "text[]"
    logical = logical or LogicalType("string")
    return PgColumn(name, logical, not notnull, formatted, read_as)


def _scalar_logical(typname: str, typtype: str, typmod: int) -> LogicalType | None:
    if typtype == "e":
        return LogicalType("string")
    return postgres_logical(typname, typmod)


def _fetch(cur: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur.execute(sql, params)
    rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


def describe(cur: Any, schema: str, table: str) -> tuple[list[PgColumn], tuple[str, ...]]:
    """The table's columns and primary key, or ([], ()) when it does not exist."""
    columns = [_column(r) for r in _fetch(cur, _COLUMNS_SQL, (schema, table))]
    keys = tuple(r[0] for r in _fetch(cur, _PRIMARY_KEY_SQL, (schema, table)))
    return columns, keys


# --------------------------------------------------------------------------- source


class PostgresSource:
    def __init__(
        self,
        conn: PostgresConnection,
        spec: SourceSpec,
        batch_size: int,
        parallelism: int,
        resources: RunResources,
    ):
        self.conn = conn
        self.spec = spec
        self.batch_size = batch_size
        self.split_count = spec.splits or parallelism
        self.resources = resources
        self.name = spec.stream or (spec.table or "").split(".")[-1] or "query"
        self.columns: list[PgColumn] = []
        self.snapshot: str | None = None
        self.window: CursorWindow | None = None

    def restrict(self, window: CursorWindow) -> None:
        """Read only the rows of this cursor window (and those with a NULL cursor)."""
        self.window = window

    def discover(self) -> TableSchema:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if self.spec.table:
                    self.columns, keys = self._describe_table(cur)
                else:
                    self.columns, keys = self._describe_query(cur), ()
            finally:
                db.rollback()
        return TableSchema(tuple(Column(c.name, c.logical, c.nullable) for c in self.columns), keys)

    def _describe_table(self, cur: Any) -> tuple[list[PgColumn], tuple[str, ...]]:
        assert self.spec.table is not None
        schema, table = qualified(self.spec.table)
        columns, keys = describe(cur, schema, table)
        if not columns:
            raise SourceError(
                f"PostgreSQL table {schema}.{table} does not exist "
                "(or has no columns you may read)",
                hint="check the name, the schema and the user's privileges",
            )
        if self.spec.columns:
            by_name = {c.name: c for c in columns}
            missing = [c for c in self.spec.columns if c not in by_name]
            if missing:
                raise SourceError(
                    f"columns {missing} are not in {schema}.{table}."
                    f"{did_you_mean(missing[0], by_name)}",
                    hint=f"available columns: {', '.join(by_name)}",
                )
            columns = [by_name[c] for c in self.spec.columns]
            keys = keys if set(keys) <= set(self.spec.columns) else ()
        return columns, keys

    def _describe_query(self, cur: Any) -> list[PgColumn]:
        """A query's columns, from the types of a zero-row result."""
        try:
            sql, params = self._query()
            _execute(cur, f"SELECT * FROM ({sql}) AS q LIMIT 0", params)
            schema = cur.fetch_arrow_table().schema
        except Exception as exc:
            raise SourceError(
                f"PostgreSQL query of stream '{self.name}' failed: {exc}", hint="check the SQL"
            ) from exc
        columns = []
        for field in schema:
            meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
            typname = meta.get("POSTGRESQL:type", "")
            typmod = int(meta.get("POSTGRESQL:typmod", "-1"))
            elem = typname[1:] if typname.startswith("_") else ""
            row = (
                field.name,
                False,
                typmod,
                typname,
                "b",
                "A" if elem else "",
                "",
                elem,
                "",
                "",
                typname,
            )
            columns.append(_column(row))
        return columns

    def splits(self) -> list[Split]:
        # A window with a start reads the recent rows, through an index on the cursor when
        # there is one; ctid ranges would make each split scan its part of the whole heap.
        windowed = self.window is not None and self.window.start is not None
        if not self.spec.table or self.split_count <= 1 or windowed:
            return [Split(0)]
        schema, table = qualified(self.spec.table)
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                ((pages,),) = _fetch(
                    cur,
                    "SELECT pg_relation_size(format('%I.%I', $1, $2)) / "
                    "current_setting('block_size')::bigint",
                    (schema, table),
                )
            finally:
                db.rollback()
        count = max(1, min(self.split_count, int(pages) // 8 or 1))
        self._export_snapshot()
        step = -(-int(pages) // count) if pages else 1
        return [
            Split(
                i, {"first_page": i * step, "end_page": None if i == count - 1 else (i + 1) * step}
            )
            for i in range(count)
        ]

    def _export_snapshot(self) -> None:
        """Hold a snapshot open for the run, so every split reads the same state."""
        db = connect(self.conn)
        cur = db.cursor()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        ((self.snapshot,),) = _fetch(cur, "SELECT pg_export_snapshot()")
        self.resources.closers.append(lambda: (cur.close(), db.rollback(), db.close()))

    def sql(self, split: Split | None = None, scanner: bool = False) -> str:
        """The statement that reads a split; ``scanner``: with the casts DuckDB's
        PostgreSQL scanner needs (see ``scanner_cast``)."""
        select = ", ".join(
            (scanner_select if scanner else _select)(c) + f" AS {quote_double(c.name)}"
            for c in self.columns
        )
        window = self._window_predicate()
        if self.spec.query:
            query, _ = self._query()
            clause = f" WHERE {window}" if window else ""
            return f"SELECT {select} FROM ({query}) AS q{clause}"
        assert self.spec.table is not None
        where = [f"({self.spec.where})"] if self.spec.where else []
        if window:
            where.append(window)
        if split is not None and "first_page" in split.params:
            where.append(f"ctid >= '({int(split.params['first_page'])},0)'::tid")
            if split.params["end_page"] is not None:
                where.append(f"ctid < '({int(split.params['end_page'])},0)'::tid")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {select} FROM {quoted(*qualified(self.spec.table))}{clause}"

    def _query(self) -> tuple[str, list[Any]]:
        """The custom query, its {start_timestamp}/{end_timestamp} bound as parameters."""
        query = _strip(self.spec.query or "")
        if not has_placeholders(query):
            return query, []
        if self.window is None:
            raise SourceError(
                f"the query of stream '{self.name}' uses {{start_timestamp}}/{{end_timestamp}}, "
                "which only an incremental step fills in",
                hint="add 'incremental: {cursor: <column>}' to the step",
            )
        return bind_placeholders(query, self.window.placeholder_values())

    def _window_predicate(self) -> str | None:
        """The window on the cursor column; a query with placeholders filters itself."""
        if self.window is None or has_placeholders(self.spec.query):
            return None
        column = next((c for c in self.columns if c.name == self.window.cursor), None)
        if column is None:
            return None  # reported by the sync (the cursor is not in the stream)
        kind, tz = column.logical.kind, column.logical.tz
        return self.window.predicate(quote_double(column.name), kind, tz)

    @property
    def reader(self) -> str:
        """``duckdb`` (DuckDB's PostgreSQL scanner decodes the binary COPY stream) when
        its extension is installed, the statement has no parameters and it carries every
        column faithfully; else ``adbc``."""
        if scanner_extension() is None or (self.spec.query and self._query()[1]):
            return "adbc"
        if all(scanner_carries(c) for c in self.columns):
            return "duckdb"
        return "adbc"

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        target = TableSchema(
            tuple(Column(c.name, c.logical, c.nullable) for c in self.columns)
        ).to_arrow()
        if self.reader == "duckdb":
            yield from self._scan(split, target)
            return
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if self.snapshot:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cur.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
                _execute(cur, self.sql(split), self._query()[1] if self.spec.query else [])
                reader = cur.fetch_record_batch()
                for batch in reader:
                    converted = conform_batch(batch, target)
                    for offset in range(0, converted.num_rows, self.batch_size):
                        yield converted.slice(offset, self.batch_size)
            except Exception as exc:
                if isinstance(exc, SourceError):
                    raise
                raise SourceError(
                    f"reading PostgreSQL stream '{self.name}' failed: {exc}",
                    hint="check the SQL, the table and the connection",
                ) from exc
            finally:
                db.rollback()

    def _scan(self, split: Split, target: pa.Schema) -> Iterator[pa.RecordBatch]:
        """A split read by DuckDB's PostgreSQL scanner: the same statement as the ADBC
        path, run by ``postgres_query`` in the run's snapshot, streamed as Arrow."""
        import duckdb

        from deltaflow.connectors.duckdb import scalar

        uri = secret_uri(self.conn)
        con = duckdb.connect(config={"threads": 1})
        began, backend, finished = False, None, False
        try:
            con.execute(f"LOAD {quote_single(str(scanner_extension()))}")
            con.execute(f"ATTACH {quote_single(uri)} AS pg (TYPE postgres, READ_ONLY)")
            con.execute("BEGIN")
            began = True
            if self.snapshot:
                setup = (
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; "
                    f"SET TRANSACTION SNAPSHOT '{self.snapshot}'"
                )
                con.execute(f"CALL postgres_execute('pg', {quote_single(setup)})")
            backend = scalar(con, "SELECT * FROM postgres_query('pg', 'SELECT pg_backend_pid()')")
            statement = quote_single(self.sql(split, scanner=True))
            result = con.execute(f"SELECT * FROM postgres_query('pg', {statement})")
            for batch in result.to_arrow_reader(self.batch_size):
                yield conform_batch(batch, target)
            finished = True
        except Exception as exc:  # duckdb.Error, and OSError for a lost connection
            message = redact(str(exc).replace(uri, "the connection's URI"))
            raise SourceError(
                f"reading PostgreSQL stream '{self.name}' failed: {message}",
                hint="check the SQL, the table and the connection",
            ) from None
        finally:
            if backend is not None and not finished:  # stopped early: end the COPY, the
                self._cancel(backend)  # rollback would otherwise read all of it
            if began:  # while the server is there: DuckDB would abort on a dead one later
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
            con.close()

    def _cancel(self, backend: int) -> None:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            _fetch(cur, "SELECT pg_cancel_backend($1::int)", (backend,))
            db.rollback()


#: kinds DuckDB's PostgreSQL scanner carries as they are, value for value the same as ADBC
#: (tests/integration/test_postgres.py compares both readers); not dates (DuckDB cannot
#: hand over 'infinity' as Arrow); numerics are handled apart (``scanner_select``)
SCANNER_KINDS = frozenset(
    {"boolean", "int16", "int32", "int64", "float32", "float64", "string", "binary", "json"}
    | {"timestamp", "time"}
)


def scanner_carries(column: PgColumn) -> bool:
    """Whether DuckDB's scanner reads ``column`` exactly (with ``scanner_cast``)."""
    logical = column.logical
    if column.read_as or logical.kind == "decimal":
        return True
    if logical.kind == "list":
        return logical.item is not None and logical.item.kind in SCANNER_KINDS
    return logical.kind in SCANNER_KINDS


def scanner_cast(column: PgColumn) -> str | None:
    """The cast the scanner's statement reads ``column`` with, if any: the ADBC path's,
    and PostgreSQL's text for a numeric the scanner would turn into DOUBLE."""
    if column.read_as:
        return column.read_as
    if column.logical.kind == "decimal" and not _exact_decimal(column.logical):
        return "text"
    return None


def _exact_decimal(logical: LogicalType) -> bool:
    """A numeric(p,s) the scanner decodes to DECIMAL(p,s) itself (p <= 38)."""
    return logical.precision is not None and logical.precision <= 38


def _select(column: PgColumn) -> str:
    name = quote_double(column.name)
    return f"{name}::{column.read_as}" if column.read_as else name


def scanner_select(column: PgColumn) -> str:
    """How the scanner's statement selects ``column``. A numeric(p,s) is decoded by the
    scanner, which would read a NaN as 0: a NaN stops the read instead, with an error
    that names the column (the text is built per row, so PostgreSQL cannot fold it)."""
    name = quote_double(column.name)
    cast = scanner_cast(column)
    if cast:
        return f"{name}::{cast}"
    logical = column.logical
    if logical.kind == "decimal":
        message = f" in numeric column {column.name} has no exact decimal form"
        return (
            f"(CASE WHEN {name} = 'NaN' THEN ({name}::text || {_escaped(message)})::numeric"
            f" ELSE {name} END)::numeric({logical.precision},{logical.scale or 0})"
        )
    return name


def _escaped(text: str) -> str:
    """An E'' string literal: safe whatever ``standard_conforming_strings`` says."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


@functools.cache
def scanner_extension() -> str | None:
    """The file of DuckDB's PostgreSQL scanner built for the installed DuckDB (the
    ``duckdb-extension-postgres_scanner`` package of the ``postgres`` extra), or None."""
    try:
        import duckdb
        import duckdb_extension_postgres_scanner as package
    except ImportError:
        return None
    path = (
        Path(package.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "postgres_scanner.duckdb_extension"
    )
    if not path.exists():
        log.info("no PostgreSQL scanner for DuckDB %s: reading with ADBC", duckdb.__version__)
        return None
    return str(path)


def _execute(cur: Any, sql: str, params: list[Any]) -> None:
    # Parameters only when there are some: ADBC reads a parameterised query more slowly.
    if params:
        cur.execute(sql, params)
    else:
        cur.execute(sql)


def _strip(query: str) -> str:
    """A query without trailing semicolons and white space, to nest it as a subquery."""
    query = query.strip()
    while query.endswith(";"):
        query = query[:-1].rstrip()
    return query if "--" not in query.splitlines()[-1] else query + "\n"


# --------------------------------------------------------------------------- destination

#: logical kind -> kinds it can widen to in place (ALTER COLUMN ... TYPE)
WIDENINGS: dict[str, tuple[str, ...]] = {
    "int8": ("int16", "int32", "int64", "decimal"),
    "int16": ("int32", "int64", "decimal"),
    "int32": ("int64", "decimal"),
    "int64": ("decimal",),
    "float32": ("float64",),
}


class PostgresDestination:
    def __init__(self, conn: PostgresConnection, spec: DestinationSpec):
        assert spec.table is not None
        self.conn = conn
        self.spec = spec
        self.schema_name, self.table = qualified(spec.table)
        self.name = spec.table
        self.target = quoted(self.schema_name, self.table)
        self.columns: dict[str, PgColumn] = {}
        self.primary_key: tuple[str, ...] = ()

    def pg_type(self, logical: LogicalType) -> str:
        if self.spec.nested == "json" and logical.kind == "list":
            return "jsonb"
        return postgres_type(logical)

    def prepare(self, schema: TableSchema) -> None:
        """Create the table (with primary key and indexes), or evolve it to the schema."""
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if self.spec.drop_existing:
                    cur.execute(f"DROP TABLE IF EXISTS {self.target}")
                columns, _keys = describe(cur, self.schema_name, self.table)
                if columns:
                    self._evolve(cur, {c.name: c for c in columns}, schema)
                else:
                    self._create(cur, schema)
                db.commit()
            except BaseException:
                db.rollback()
                raise
            columns, self.primary_key = describe(cur, self.schema_name, self.table)
            db.rollback()
        self.columns = {c.name: c for c in columns}

    def _create(self, cur: Any, schema: TableSchema) -> None:
        keys = tuple(self.spec.primary_key) or schema.primary_key
        definitions = [
            f"{quote_double(c.name)} {self.pg_type(c.type)}"
            + (" NOT NULL" if c.name in keys else "")
            for c in schema.columns
        ]
        if keys:
            definitions.append(f"PRIMARY KEY ({', '.join(quote_double(k) for k in keys)})")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_double(self.schema_name)}")
        cur.execute(f"CREATE TABLE {self.target} ({', '.join(definitions)})")
        for index in self.spec.indexes:
            cur.execute(self._index_sql(index))

    def _index_sql(self, index: IndexSpec) -> str:
        name = index.name or f"{self.table}_{'_'.join(index.columns)}_idx"[:63]
        unique = "UNIQUE " if index.unique else ""
        columns = ", ".join(quote_double(c) for c in index.columns)
        return (
            f"CREATE {unique}INDEX IF NOT EXISTS {quote_double(name)} ON {self.target} "
            f"USING {index.using} ({columns})"
        )

    def _evolve(self, cur: Any, existing: dict[str, PgColumn], schema: TableSchema) -> None:
        policy = self.spec.on_schema_change
        for column in schema.columns:
            current = existing.get(column.name)
            wanted = self.pg_type(column.type)
            if current is None:
                if policy == "fail":
                    raise self._change_error(column.name, "(missing)", wanted)
                cur.execute(
                    f"ALTER TABLE {self.target} ADD COLUMN {quote_double(column.name)} {wanted}"
                )
            elif not _holds(current, column.type):
                if policy != "evolve" or not _widens(current, column.type):
                    raise self._change_error(column.name, current.pg_type, wanted)
                cur.execute(
                    f"ALTER TABLE {self.target} ALTER COLUMN "
                    f"{quote_double(column.name)} TYPE {wanted}"
                )

    def _change_error(self, column: str, current: str, wanted: str) -> SchemaError:
        return schema_change_error(self.name, "PostgreSQL", column, current, wanted)

    def load(
        self,
        batches: pa.RecordBatchReader,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
        state: Callable[[], list[StateRecord]] | None = None,
        rejected: Callable[[], pa.Table | None] | None = None,
    ) -> LoadResult:
        upstream: list[BaseException] = []
        ingestable = relay_failures(_ingestable(batches), upstream)
        direct = write_mode != "merge" and all(
            field.name in self.columns and _copies_into(field.type, self.columns[field.name])
            for field in ingestable.schema
        )
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if direct:
                    log.debug("COPY straight into %s", self.name)
                    details = self._copy(cur, ingestable, write_mode)
                else:
                    details = self._stage_and_apply(cur, ingestable, write_mode, primary_key)
                ((count,),) = _fetch(cur, f"SELECT count(*) FROM {self.target}")
                for record in state() if state else []:
                    self._put_state(cur, record)
                held = rejected() if rejected else None
                if held is not None:
                    cur.adbc_ingest(
                        f"{self.table}{quarantine.SUFFIX}",
                        held,
                        mode="create_append",
                        db_schema_name=self.schema_name,
                    )
                crash_point("after_load_before_commit")
                db.commit()
                crash_point("after_commit")
            except BaseException as exc:
                db.rollback()
                if upstream:
                    raise upstream[0] from None
                if isinstance(exc, (LoadError, SchemaError)):
                    raise
                if isinstance(exc, Exception):
                    raise LoadError(
                        f"loading into PostgreSQL table {self.name} failed: {exc}",
                        hint="check that the source columns fit the table's types",
                    ) from exc
                raise
        rows = details.pop("rows_loaded")
        if held is None:
            return LoadResult(rows, int(count), details)
        where = {"quarantine_table": f"{self.schema_name}.{self.table}{quarantine.SUFFIX}"}
        return LoadResult(rows, int(count), details | where, held.num_rows)

    # Incremental state, in a table next to the destination table.

    def _state_table(self) -> str:
        return quoted(self.schema_name, STATE_TABLE)

    def _put_state(self, cur: Any, record: StateRecord) -> None:
        cur.execute(state_table_sql(self._state_table()))
        cur.execute(state_upsert_sql(self._state_table()), state_params(record))

    def _exists(self, cur: Any, table: str) -> bool:
        ((found,),) = _fetch(
            cur,
            "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
            (self.schema_name, table),
        )
        return bool(found)

    def read_states(self, prefix: str) -> list[StateRecord]:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if not self._exists(cur, STATE_TABLE):
                    return []
                rows = _fetch(
                    cur,
                    f"SELECT {STATE_COLUMNS} FROM {self._state_table()} "
                    "WHERE starts_with(state_key, $1) ORDER BY state_key",
                    (prefix,),
                )
            finally:
                db.rollback()
        return [state_from_row(row) for row in rows]

    def write_state(self, record: StateRecord) -> None:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            self._put_state(cur, record)
            db.commit()

    def delete_states(self, prefix: str) -> int:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            if not self._exists(cur, STATE_TABLE):
                return 0
            ((deleted,),) = _fetch(
                cur,
                f"WITH gone AS (DELETE FROM {self._state_table()} "
                "WHERE starts_with(state_key, $1) RETURNING 1) SELECT count(*) FROM gone",
                (prefix,),
            )
            db.commit()
        return int(deleted)

    def cursor_max(self, column: str) -> Any:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                columns, _ = describe(cur, self.schema_name, self.table)
                if column not in {c.name for c in columns}:
                    return None
                ((top,),) = _fetch(cur, f"SELECT max({quote_double(column)}) FROM {self.target}")
            finally:
                db.rollback()
        return top

    def rows_at_max(self, column: str, columns: list[str]) -> pa.Table | None:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                existing, _ = describe(cur, self.schema_name, self.table)
                if not {column, *columns} <= {c.name for c in existing}:
                    return None
                c = quote_double(column)
                select = ", ".join(quote_double(n) for n in columns)
                cur.execute(
                    f"SELECT {select} FROM {self.target} "
                    f"WHERE {c} = (SELECT max({c}) FROM {self.target})"
                )
                table: pa.Table = cur.fetch_arrow_table()
            finally:
                db.rollback()
        return table

    def _copy(self, cur: Any, batches: pa.RecordBatchReader, mode: WriteMode) -> dict[str, int]:
        """COPY the batches straight into the target (see ``_copies_into``)."""
        if mode == "replace":
            cur.execute(f"TRUNCATE {self.target}")
        jsonb = [f.name for f in batches.schema if self.columns[f.name].pg_type == "jsonb"]
        loaded = cur.adbc_ingest(
            self.table,
            _jsonb_binary(batches, jsonb),
            mode="append",
            db_schema_name=self.schema_name,
        )
        return {"rows_loaded": int(loaded)}

    def _stage_and_apply(
        self,
        cur: Any,
        batches: pa.RecordBatchReader,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
    ) -> dict[str, int]:
        """COPY the batches into a temporary table, then cast them into the target."""
        incoming = TableSchema.from_arrow(batches.schema)
        staging = f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        log.debug("COPY into staging table %s for %s", staging, self.name)
        cur.adbc_ingest(staging, batches, mode="create", temporary=True)
        ((staged,),) = _fetch(cur, f"SELECT count(*) FROM {quote_double(staging)}")
        names = [c.name for c in incoming.columns if c.name in self.columns]
        target_cols = ", ".join(quote_double(n) for n in names)
        values = ", ".join(self._cast(c) for c in incoming.columns if c.name in self.columns)
        source = f"SELECT {values} FROM {quote_double(staging)} AS s"
        if write_mode == "replace":
            cur.execute(f"TRUNCATE {self.target}")
        if write_mode != "merge":
            cur.execute(f"INSERT INTO {self.target} ({target_cols}) {source}")
            return {"rows_loaded": int(staged)}
        return {
            "rows_loaded": int(staged),
            **self._merge(cur, staging, names, target_cols, values, primary_key),
        }

    def _merge(
        self,
        cur: Any,
        staging: str,
        names: list[str],
        target_cols: str,
        values: str,
        primary_key: tuple[str, ...],
    ) -> dict[str, int]:
        check_merge_keys(
            self.name,
            primary_key,
            lambda where: int(
                _fetch(cur, f"SELECT count(*) FROM {quote_double(staging)} WHERE {where}")[0][0]
            ),
        )
        keys = ", ".join(quote_double(k) for k in primary_key)
        # the last row of each key wins: ctid follows the staging table's insertion order
        latest = (
            f"SELECT DISTINCT ON ({keys}) {values} FROM {quote_double(staging)} AS s "
            f"ORDER BY {keys}, s.ctid DESC"
        )
        if tuple(self.primary_key) == tuple(primary_key):
            updates = ", ".join(
                f"{quote_double(n)} = EXCLUDED.{quote_double(n)}"
                for n in names
                if n not in primary_key
            )
            action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            sql = (
                f"WITH applied AS (INSERT INTO {self.target} ({target_cols}) {latest} "
                f"ON CONFLICT ({keys}) {action} RETURNING (xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
                "FROM applied"
            )
            ((inserted, updated),) = _fetch(cur, sql)
        else:  # no matching unique key on the table: delete the keys, then insert
            match = " AND ".join(f"t.{quote_double(k)} = s.{quote_double(k)}" for k in primary_key)
            cur.execute(
                f"DELETE FROM {self.target} AS t USING {quote_double(staging)} AS s WHERE {match}"
            )
            updated = cur.rowcount if cur.rowcount and cur.rowcount > 0 else 0
            cur.execute(f"INSERT INTO {self.target} ({target_cols}) {latest}")
            ((total,),) = _fetch(
                cur, f"SELECT count(DISTINCT ({keys})) FROM {quote_double(staging)}"
            )
            inserted = int(total) - int(updated)
        return {"inserted": int(inserted), "updated": int(updated)}

    def _cast(self, column: Column) -> str:
        """The staged column converted to the target column's type."""
        target = self.columns[column.name].pg_type
        expr = f"s.{quote_double(column.name)}"
        if target in ("jsonb", "json") and column.type.kind == "list":
            return f"to_jsonb({expr})::{target}"
        return f"{expr}::{target}"


def _holds(current: PgColumn, incoming: LogicalType) -> bool:
    """Whether the existing column can take the incoming type without change."""
    have = current.logical
    if current.pg_type.startswith("character varying(") and incoming.kind == "string":
        return False  # a bounded varchar may be too short: widen it to text
    if have == incoming or (
        have.kind in ("json", "string") and incoming.kind in ("json", "string", "struct", "list")
    ):
        return True
    if have.kind == "decimal" and incoming.kind == "decimal":
        return have.precision is None or (
            incoming.precision is not None
            and (have.scale or 0) >= (incoming.scale or 0)
            and have.precision - (have.scale or 0) >= incoming.precision - (incoming.scale or 0)
        )
    if have.kind == "timestamp" and incoming.kind == "timestamp":
        return bool(have.tz) == bool(incoming.tz)
    return (incoming.kind in WIDENINGS and have.kind in WIDENINGS[incoming.kind]) or (
        have.kind == "list" and incoming.kind == "list"
    )


def _widens(current: PgColumn, incoming: LogicalType) -> bool:
    """Whether the existing column can be widened in place to take the incoming type."""
    have = current.logical
    if have.kind == "string" and incoming.kind == "string":
        return True  # varchar(n) -> text
    if have.kind == "decimal" and incoming.kind == "decimal":
        return incoming.precision is None or have.precision is not None
    return incoming.kind in WIDENINGS.get(have.kind, ())


#: format_type() of the column ADBC's binary COPY writes for an Arrow type
_COPY_TYPES = {
    "bool": "boolean",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float": "real",
    "double": "double precision",
    "string": "text",
    "large_string": "text",
    "binary": "bytea",
    "large_binary": "bytea",
    "date32[day]": "date",
    "time64[us]": "time without time zone",
    "month_day_nano_interval": "interval",
}


def _copies_into(dtype: pa.DataType, target: PgColumn) -> bool:
    """Whether a binary COPY of ``dtype`` lands in ``target`` exactly as a cast would.

    Text also goes into json, and into jsonb once ``_jsonb_binary`` has added the format's
    version byte; decimals go into any numeric, which rounds to its scale as a cast does.
    Anything else (uuid, bounded varchar, nested data held as JSON, ...) is staged and cast.
    """
    import pyarrow as pa

    if pa.types.is_timestamp(dtype):
        wrote = f"timestamp {'with' if dtype.tz else 'without'} time zone"
    elif pa.types.is_decimal128(dtype):
        return target.pg_type == "numeric" or target.pg_type.startswith("numeric(")
    elif pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        item = _COPY_TYPES.get(str(dtype.value_type))
        return item is not None and target.pg_type == f"{item}[]"
    else:
        wrote = _COPY_TYPES.get(str(dtype), "")
    if wrote == "text":
        return target.pg_type in ("text", "character varying", "json", "jsonb")
    return bool(wrote) and wrote == target.pg_type


def _jsonb_binary(batches: pa.RecordBatchReader, columns: list[str]) -> pa.RecordBatchReader:
    """JSON text in the binary COPY form of jsonb: a version byte (1), then the text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not columns:
        return batches
    schema = batches.schema
    for name in columns:
        schema = schema.set(schema.get_field_index(name), schema.field(name).with_type(pa.binary()))
    version, nothing = pa.scalar(b"\x01", pa.binary()), pa.scalar(b"", pa.binary())

    def convert() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            arrays = [
                pc.call_function(
                    "binary_join_element_wise", [version, column.cast(pa.binary()), nothing]
                )
                if name in columns
                else column
                for name, column in zip(batch.schema.names, batch.columns, strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, convert())


def _ingestable(batches: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """Batches the ADBC ingest can write: structs (and lists holding them) as JSON text."""
    import pyarrow as pa

    def nested(dtype: pa.DataType) -> bool:
        if pa.types.is_struct(dtype) or pa.types.is_map(dtype):
            return True
        return bool(pa.types.is_list(dtype) and nested(dtype.value_type))

    to_json = [i for i, f in enumerate(batches.schema) if nested(f.type)]
    if not to_json:
        return batches
    fields = [f.with_type(pa.string()) if i in to_json else f for i, f in enumerate(batches.schema)]
    schema = pa.schema(fields)

    def convert() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns = [_json_text(c) if i in to_json else c for i, c in enumerate(batch.columns)]
            yield pa.RecordBatch.from_arrays(columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, convert())


def _json_text(column: pa.Array[Any]) -> pa.Array[Any]:
    """Nested values as JSON text (a Python loop: nested data is the slow path)."""
    import json

    import pyarrow as pa

    return pa.array(
        [
            None if v is None else json.dumps(v, default=str, ensure_ascii=False)
            for v in column.to_pylist()
        ],
        pa.string(),
    )


# --------------------------------------------------------------------------- factories


def open_source(
    conn: PostgresConnection,
    spec: SourceSpec,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> PostgresSource:
    return PostgresSource(conn, spec, batch_size, parallelism, resources)


def open_destination(
    conn: PostgresConnection, spec: DestinationSpec, resources: RunResources
) -> PostgresDestination:
    return PostgresDestination(conn, spec)


def query(
    conn: PostgresConnection, resources: RunResources, sql: str, timeout: float | None = None
) -> pa.Table:
    """Run one read-only query (quality checks, metrics) and return its rows; past
    ``timeout`` seconds the server cancels it (statement_timeout)."""
    with closing(connect(conn)) as db, closing(db.cursor()) as cur:
        try:
            if timeout:
                cur.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            cur.execute(sql)
            table: pa.Table = cur.fetch_arrow_table()
        finally:
            db.rollback()
    return table


def execute(conn: PostgresConnection, resources: RunResources, sql: str) -> None:
    """Run one statement that changes data (quarantine purge and replay), committed."""
    with closing(connect(conn)) as db, closing(db.cursor()) as cur:
        cur.execute(sql)
        db.commit()
