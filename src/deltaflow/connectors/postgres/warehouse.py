"""PostgreSQL as a warehouse: the SQL that quality checks, metrics, reconciliation and
the quarantine commands run in a PostgreSQL database, and what that SQL looks like."""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

from deltaflow.connectors.postgres import connect
from deltaflow.connectors.protocol import split_table
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import PostgresConnection
    from deltaflow.connectors.protocol import RunResources

__all__ = ["PostgresWarehouse", "open_warehouse"]


class PostgresWarehouse:
    """A PostgreSQL database; each statement runs on a connection of its own."""

    kind = "postgres"
    dialect = "postgres"
    default_schema = "public"

    def __init__(self, conn: PostgresConnection, resources: RunResources) -> None:
        self.conn = conn
        self.resources = resources

    def quote(self, name: str) -> str:
        """``"name"``, embedded quotes doubled."""
        return quote_double(name)

    def table_ref(self, table: str) -> str:
        """``"schema"."table"``; a bare name is in ``public``."""
        schema, name = split_table(table, self.default_schema)
        return f"{quote_double(schema)}.{quote_double(name)}"

    def query(self, sql: str, timeout: float | None = None) -> pa.Table:
        """Run one read-only query and return its rows; past ``timeout`` seconds the
        server cancels it (statement_timeout). Nothing is committed."""
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if timeout:
                    cur.execute(f"SET statement_timeout = {int(timeout * 1000)}")
                cur.execute(sql)
                table: pa.Table = cur.fetch_arrow_table()
            finally:
                db.rollback()
        return table

    def execute(self, sql: str) -> None:
        """Run one statement that changes data, committed."""
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            cur.execute(sql)
            db.commit()

    def text_sql(self, column: str, dtype: pa.DataType) -> str:
        """The canonical text of the named column's value: floats at 6 decimal places,
        timestamps in UTC with microseconds, the rest as PostgreSQL writes it; NULL as \\N."""
        import pyarrow as pa

        name = quote_double(column)
        if pa.types.is_floating(dtype):
            cast = (
                f"CASE WHEN {name} IN ('NaN', 'Infinity', '-Infinity') THEN {name}::text "
                f"ELSE round({name}::numeric, 6)::text END"
            )
        elif pa.types.is_timestamp(dtype):
            utc = f"({name} AT TIME ZONE 'UTC')" if dtype.tz else name
            cast = f"to_char({utc}, 'YYYY-MM-DD HH24:MI:SS.US')"
        else:
            cast = f"{name}::text"
        return f"coalesce({cast}, '\\N')"

    def hash28_sql(self, text: str) -> str:
        """The first 7 hex digits of md5(text) as a non-negative integer."""
        return f"('x' || substr(md5({text}), 1, 7))::bit(28)::bigint"

    def int_div_sql(self, left: str, right: str) -> str:
        """``/`` of two integers is integer division in PostgreSQL."""
        return f"({left} / {right})"


def open_warehouse(conn: PostgresConnection, resources: RunResources) -> PostgresWarehouse:
    """The warehouse of a PostgreSQL connection; it connects per statement."""
    return PostgresWarehouse(conn, resources)
