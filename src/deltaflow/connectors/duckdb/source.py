"""Reading a DuckDB table or query as Arrow record batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from deltaflow.connectors._sql.select import (
    SelectFacts,
    bind_query,
    stream_select,
    window_predicate,
)
from deltaflow.connectors.duckdb.client import qualified
from deltaflow.connectors.protocol import CursorWindow, Split
from deltaflow.errors import SourceError, UnsupportedTypeError
from deltaflow.schema.mappings import quote_double
from deltaflow.schema.types import TableSchema

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from deltaflow.config.sources import SqlSource

#: DuckDB's facts for the stream's SELECT: a filter applies to a query's rows too
SELECT = SelectFacts(default_schema="main")

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


class DuckDBSource:
    """One stream of a DuckDB database: a table or a query, read in one split (DuckDB
    parallelises a query itself)."""

    def __init__(self, db: duckdb.DuckDBPyConnection, spec: SqlSource, batch_size: int):
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
        """The table, or the query as a subquery, with ``columns``, ``where`` and the
        window applied (the query's placeholders as $1, $2)."""
        return self._statement()[0]

    def _statement(self) -> tuple[str, list[Any]]:
        spec = self.spec
        query, params = bind_query(spec.query, self.window, self.name) if spec.query else ("", [])
        columns = ", ".join(quote_double(c) for c in spec.columns) if spec.columns else "*"
        types = {c.name: c.type for c in self.schema.columns} if self.schema else {}
        window = window_predicate(self.window, spec.query, types)
        return stream_select(spec, columns, SELECT, window=window, query=query), params

    def discover(self) -> TableSchema:
        self._check_types()
        sql, params = self._statement()
        reader = self._execute(f"SELECT * FROM (\n{sql}\n) LIMIT 0", params)
        # The key spelled as the stream spells it; none when 'columns' left part of it out.
        names = {name.lower(): name for name in reader.schema.names}
        key = tuple(names.get(k.lower(), "") for k in self._primary_key())
        self.schema = TableSchema.from_arrow(reader.schema, key if all(key) else ())
        return self.schema

    def _check_types(self) -> None:
        """Refuse the DuckDB types whose Arrow form would change their values."""
        import duckdb

        sql, params = self._statement()
        try:
            described = self.db.cursor().sql(f"DESCRIBE (\n{sql}\n)", params=params or None)
            columns = described.fetchall()
        except duckdb.Error as exc:
            raise SourceError(
                f"DuckDB source '{self.name}' failed: {exc}",
                hint="check the table name, columns and SQL",
            ) from exc
        for name, dtype, *_ in columns:
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

        reader = self._execute(*self._statement())
        try:
            yield from reader
        except (OSError, duckdb.Error) as exc:  # errors while streaming reach us as OSError
            raise SourceError(
                f"DuckDB source '{self.name}' failed while reading: {exc}",
                hint="check the SQL and the values it converts",
            ) from exc

    def _execute(self, sql: str, params: list[Any]) -> pa.RecordBatchReader:
        import duckdb

        try:
            relation = self.db.cursor().sql(sql, params=params or None)
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
