"""DuckDB as a warehouse: the SQL that quality checks, metrics, reconciliation and the
quarantine commands run in a DuckDB database, and what that SQL looks like."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from deltaflow.connectors.duckdb import connect
from deltaflow.connectors.protocol import split_table
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import DuckDBConnection
    from deltaflow.connectors.protocol import RunResources

__all__ = ["DuckDBWarehouse", "open_warehouse"]


class DuckDBWarehouse:
    """A DuckDB database file, reached through the run's shared connection."""

    kind = "duckdb"
    dialect = "duckdb"
    default_schema = "main"

    def __init__(self, conn: DuckDBConnection, resources: RunResources) -> None:
        self.conn = conn
        self.resources = resources

    def quote(self, name: str) -> str:
        """``"name"``, embedded quotes doubled."""
        return quote_double(name)

    def table_ref(self, table: str) -> str:
        """``"schema"."table"``; a bare name is in ``main``."""
        schema, name = split_table(table, self.default_schema)
        return f"{quote_double(schema)}.{quote_double(name)}"

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

    def text_sql(self, column: str, dtype: pa.DataType) -> str:
        """The canonical text of the named column's value: floats at 6 decimal places,
        timestamps in UTC with microseconds, the rest as DuckDB writes it; NULL as \\N."""
        import pyarrow as pa

        name = quote_double(column)
        if pa.types.is_floating(dtype):
            cast = _float_text(name)
        elif pa.types.is_timestamp(dtype):
            utc = f"({name} AT TIME ZONE 'UTC')" if dtype.tz else name
            cast = f"strftime({utc}, '%Y-%m-%d %H:%M:%S.%f')"
        else:
            cast = f"CAST({name} AS VARCHAR)"
        return f"coalesce({cast}, '\\N')"

    def hash28_sql(self, text: str) -> str:
        """The first 7 hex digits of md5(text) as a non-negative integer."""
        return f"CAST('0x' || substr(md5({text}), 1, 7) AS BIGINT)"

    def int_div_sql(self, left: str, right: str) -> str:
        """DuckDB's integer division is ``//`` (``/`` gives a double)."""
        return f"({left} // {right})"


def _float_text(name: str) -> str:
    """A float at 6 decimal places (engines write floats differently: 334.0 and 334,
    2500000000000000.0 and 2.5e+15), NaN and infinities by name."""
    return (
        f"CASE WHEN isnan({name}) THEN 'NaN' WHEN isinf({name}) THEN "
        f"CASE WHEN {name} > 0 THEN 'Infinity' ELSE '-Infinity' END "
        f"ELSE CAST(CAST(round({name}, 6) AS DECIMAL(38, 6)) AS VARCHAR) END"
    )


def open_warehouse(conn: DuckDBConnection, resources: RunResources) -> DuckDBWarehouse:
    """The warehouse of a DuckDB connection; the database opens at the first statement."""
    return DuckDBWarehouse(conn, resources)
