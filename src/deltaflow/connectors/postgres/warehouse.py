"""PostgreSQL as a warehouse: the SQL that quality checks, metrics, reconciliation and
the quarantine commands run in a PostgreSQL database, and what that SQL looks like."""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

from deltaflow.connectors._sql.warehouse import SqlWarehouse
from deltaflow.connectors.postgres import connect

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import PostgresConnection
    from deltaflow.connectors.protocol import RunResources

__all__ = ["PostgresWarehouse", "open_warehouse"]


class PostgresWarehouse(SqlWarehouse):
    """A PostgreSQL database; each statement runs on a connection of its own."""

    kind = "postgres"
    dialect = "postgres"
    default_schema = "public"
    conn: PostgresConnection

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

    def float_text(self, name: str) -> str:
        return (
            f"CASE WHEN {name} IN ('NaN', 'Infinity', '-Infinity') THEN {name}::text "
            f"ELSE round({name}::numeric, 6)::text END"
        )

    def timestamp_text(self, utc: str) -> str:
        return f"to_char({utc}, 'YYYY-MM-DD HH24:MI:SS.US')"

    def value_text(self, name: str) -> str:
        return f"{name}::text"

    def hash28_sql(self, text: str) -> str:
        """The first 7 hex digits of md5(text) as a non-negative integer."""
        return f"('x' || substr(md5({text}), 1, 7))::bit(28)::bigint"

    def int_div_sql(self, left: str, right: str) -> str:
        """``/`` of two integers is integer division in PostgreSQL."""
        return f"({left} / {right})"


def open_warehouse(conn: PostgresConnection, resources: RunResources) -> PostgresWarehouse:
    """The warehouse of a PostgreSQL connection; it connects per statement."""
    return PostgresWarehouse(conn, resources)
