"""Reading a PostgreSQL table or query as Arrow record batches.

A table is read as ctid ranges, each range on its own connection inside one exported
snapshot, so parallel splits see one consistent state of the table. A split is read by
DuckDB's PostgreSQL scanner where it carries every column exactly (``scanner``), else
through ADBC (binary COPY decoded to Arrow in C).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any

from deltaflow.connectors._common import conform_batch
from deltaflow.connectors._sql.select import (
    SelectFacts,
    bind_query,
    nested,
    stream_select,
    window_predicate,
)
from deltaflow.connectors.postgres import scanner as duckdb_scanner
from deltaflow.connectors.postgres.catalog import PgColumn, describe, result_columns
from deltaflow.connectors.postgres.client import connect, fetch, qualified, read_failure, run
from deltaflow.connectors.protocol import CursorWindow, RunResources, Split
from deltaflow.errors import SourceError, did_you_mean
from deltaflow.schema.mappings import quote_double
from deltaflow.schema.types import Column, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import PostgresConnection
    from deltaflow.config.sources import SplitSqlSource

#: PostgreSQL's facts for the stream's SELECT: a query is read as written ('where'
#: filters a table)
SELECT = SelectFacts(default_schema="public", where_on_query=False)


class PostgresSource:
    """One stream of a PostgreSQL database: a table (in ctid-range splits) or a query."""

    def __init__(
        self,
        conn: PostgresConnection,
        spec: SplitSqlSource,
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
                if table := self.spec.table:
                    self.columns, keys = self._describe_table(cur, table)
                else:
                    self.columns, keys = self._describe_query(cur), ()
            finally:
                db.rollback()
        return TableSchema(tuple(Column(c.name, c.logical, c.nullable) for c in self.columns), keys)

    def _describe_table(self, cur: Any, name: str) -> tuple[list[PgColumn], tuple[str, ...]]:
        """The columns (those of 'columns' when given) and primary key of table ``name``."""
        schema, table = qualified(name)
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
            run(cur, f"SELECT * FROM {nested(sql)} LIMIT 0", params)
            schema = cur.fetch_arrow_table().schema
        except Exception as exc:
            raise SourceError(
                f"PostgreSQL query of stream '{self.name}' failed: {exc}", hint="check the SQL"
            ) from exc
        return result_columns(schema)

    def splits(self) -> list[Split]:
        # A window with a start reads the recent rows, through an index on the cursor when
        # there is one; ctid ranges would make each split scan its part of the whole heap.
        windowed = self.window is not None and self.window.start is not None
        if not self.spec.table or self.split_count <= 1 or windowed:
            return [Split(0)]
        schema, table = qualified(self.spec.table)
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                ((pages,),) = fetch(
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
        ((self.snapshot,),) = fetch(cur, "SELECT pg_export_snapshot()")
        self.resources.closers.append(lambda: (cur.close(), db.rollback(), db.close()))

    def sql(self, split: Split | None = None, scanner: bool = False) -> str:
        """The statement that reads a split; ``scanner``: with the casts DuckDB's
        PostgreSQL scanner needs (see ``duckdb_scanner.scanner_cast``)."""
        selected = duckdb_scanner.scanner_select if scanner else _select
        columns = ", ".join(f"{selected(c)} AS {quote_double(c.name)}" for c in self.columns)
        types = {c.name: c.logical for c in self.columns}
        window = window_predicate(self.window, self.spec.query, types)
        query = self._query()[0] if self.spec.query else None
        pages = split.params if split is not None else {}
        return stream_select(
            self.spec, columns, SELECT, window=window, query=query, table_conditions=_ctid(pages)
        )

    def _query(self) -> tuple[str, list[Any]]:
        """The custom query, its {start_timestamp}/{end_timestamp} bound as parameters."""
        return bind_query(self.spec.query or "", self.window, self.name)

    @property
    def reader(self) -> str:
        """``duckdb`` (DuckDB's PostgreSQL scanner decodes the binary COPY stream) when
        its extension is installed, the statement has no parameters and it carries every
        column faithfully; else ``adbc``."""
        if duckdb_scanner.scanner_extension() is None or (self.spec.query and self._query()[1]):
            return "adbc"
        if all(duckdb_scanner.scanner_carries(c) for c in self.columns):
            return "duckdb"
        return "adbc"

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        target = TableSchema(
            tuple(Column(c.name, c.logical, c.nullable) for c in self.columns)
        ).to_arrow()
        if self.reader == "duckdb":
            yield from duckdb_scanner.scan(
                self.conn,
                self.sql(split, scanner=True),
                snapshot=self.snapshot,
                batch_size=self.batch_size,
                target=target,
                stream=self.name,
                cancel=self._cancel,
            )
            return
        yield from self._read_adbc(split, target)

    def _read_adbc(self, split: Split, target: pa.Schema) -> Iterator[pa.RecordBatch]:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if self.snapshot:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cur.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
                run(cur, self.sql(split), self._query()[1] if self.spec.query else [])
                reader = cur.fetch_record_batch()
                for batch in reader:
                    converted = conform_batch(batch, target)
                    for offset in range(0, converted.num_rows, self.batch_size):
                        yield converted.slice(offset, self.batch_size)
            except Exception as exc:
                if isinstance(exc, SourceError):
                    raise
                raise read_failure(self.name, str(exc), exc) from exc
            finally:
                db.rollback()

    def _cancel(self, backend: int) -> None:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            fetch(cur, "SELECT pg_cancel_backend($1::int)", (backend,))
            db.rollback()


def _select(column: PgColumn) -> str:
    """How the ADBC path's statement selects ``column``: with its ``read_as`` cast."""
    name = quote_double(column.name)
    return f"{name}::{column.read_as}" if column.read_as else name


def _ctid(pages: Any) -> list[str]:
    """The conditions that keep a split's ctid range (none for a whole-table split)."""
    if "first_page" not in pages:
        return []
    conditions = [f"ctid >= '({int(pages['first_page'])},0)'::tid"]
    if pages["end_page"] is not None:
        conditions.append(f"ctid < '({int(pages['end_page'])},0)'::tid")
    return conditions
