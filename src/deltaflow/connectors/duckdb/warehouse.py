"""DuckDB as a warehouse: the SQL that quality checks, metrics, reconciliation and the
quarantine commands run in a DuckDB database, and what that SQL looks like."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from deltaflow.connectors._sql.warehouse import SqlWarehouse
from deltaflow.connectors.duckdb import connect

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import DuckDBConnection
    from deltaflow.connectors.protocol import RunResources

__all__ = ["DuckDBWarehouse", "open_warehouse"]


class DuckDBWarehouse(SqlWarehouse):
    """A DuckDB database file, reached through the run's shared connection."""

    kind = "duckdb"
    dialect = "duckdb"
    default_schema = "main"
    conn: DuckDBConnection

    def query(self, sql: str, timeout: float | None = None) -> pa.Table:
        """Run one read-only query and return its rows; past ``timeout`` seconds the
        query is interrupted."""
        cursor = connect(self.conn, self.resources).cursor()
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

    def execute(self, sql: str) -> None:
        """Run one statement that changes data, committed (DuckDB autocommits)."""
        cursor = connect(self.conn, self.resources).cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()

    def float_text(self, name: str) -> str:
        return (
            f"CASE WHEN isnan({name}) THEN 'NaN' WHEN isinf({name}) THEN "
            f"CASE WHEN {name} > 0 THEN 'Infinity' ELSE '-Infinity' END "
            f"ELSE CAST(CAST(round({name}, 6) AS DECIMAL(38, 6)) AS VARCHAR) END"
        )

    def timestamp_text(self, utc: str) -> str:
        return f"strftime({utc}, '%Y-%m-%d %H:%M:%S.%f')"

    def value_text(self, name: str) -> str:
        return f"CAST({name} AS VARCHAR)"

    def hash28_sql(self, text: str) -> str:
        """The first 7 hex digits of md5(text) as a non-negative integer."""
        return f"CAST('0x' || substr(md5({text}), 1, 7) AS BIGINT)"

    def int_div_sql(self, left: str, right: str) -> str:
        """DuckDB's integer division is ``//`` (``/`` gives a double)."""
        return f"({left} // {right})"


def open_warehouse(conn: DuckDBConnection, resources: RunResources) -> DuckDBWarehouse:
    """The warehouse of a DuckDB connection; the database opens at the first statement."""
    return DuckDBWarehouse(conn, resources)
