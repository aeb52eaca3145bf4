"""BigQuery as a warehouse: the jobs that quality checks, metrics and the quarantine
commands run in a BigQuery dataset, and what their SQL looks like.

Reconciliation's row fingerprints are not written for BigQuery yet: its text of a
value (decimals without trailing zeros, its float format) differs from DuckDB's and
PostgreSQL's, so ``text_sql`` and ``hash28_sql`` refuse with a ConfigError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaflow.connectors.bigquery.clients import client, job_retry
from deltaflow.connectors.protocol import split_table
from deltaflow.errors import Code, ConfigError
from deltaflow.schema.mappings import quote_backtick

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import BigQueryConnection
    from deltaflow.connectors.protocol import RunResources

__all__ = ["BigQueryWarehouse", "open_warehouse"]


class BigQueryWarehouse:
    """A BigQuery dataset: tables named without a dataset are in the connection's."""

    kind = "bigquery"
    dialect = "bigquery"

    def __init__(self, conn: BigQueryConnection, resources: RunResources) -> None:
        self.conn = conn
        self.resources = resources
        self.default_schema = conn.dataset

    def quote(self, name: str) -> str:
        """The name in backticks, backslashes and backticks escaped."""
        return quote_backtick(name)

    def table_ref(self, table: str) -> str:
        """Dataset and table, each in backticks; a bare name is in the connection's dataset."""
        dataset, name = split_table(table, self.default_schema)
        return f"{quote_backtick(dataset)}.{quote_backtick(name)}"

    def query(self, sql: str, timeout: float | None = None) -> pa.Table:
        """Run one query job and return its rows, read over REST. Tables named without a
        dataset are in the connection's dataset; past ``timeout`` seconds BigQuery stops
        the job."""
        from google.cloud import bigquery

        conn = self.conn
        config = bigquery.QueryJobConfig(default_dataset=f"{conn.project}.{conn.dataset}")
        if timeout:
            config.job_timeout_ms = int(timeout * 1000)
        job = client(conn, self.resources).query(
            sql, job_config=config, retry=job_retry(conn), timeout=conn.timeout
        )
        table: pa.Table = job.to_arrow(create_bqstorage_client=False)
        return table

    def execute(self, sql: str) -> None:
        """Run one statement that changes data (a job commits its own statement)."""
        conn = self.conn
        job = client(conn, self.resources).query(sql, retry=job_retry(conn), timeout=conn.timeout)
        job.result(retry=job_retry(conn), timeout=conn.timeout)

    def text_sql(self, column: str, dtype: pa.DataType) -> str:
        """Not written yet: see the module."""
        raise _no_fingerprints()

    def hash28_sql(self, text: str) -> str:
        """Not written yet: see the module."""
        raise _no_fingerprints()

    def int_div_sql(self, left: str, right: str) -> str:
        """BigQuery's integer quotient is ``DIV``."""
        return f"DIV({left}, {right})"


def _no_fingerprints() -> ConfigError:
    return ConfigError(
        "reconcile does not support BigQuery yet: its row fingerprints are written for "
        "duckdb and postgres only",
        hint="reconcile a DuckDB or PostgreSQL table, or compare BigQuery tables with a "
        "quality step's custom_sql check",
        code=Code.CONFIG_RECONCILE_UNSUPPORTED,
    )


def open_warehouse(conn: BigQueryConnection, resources: RunResources) -> BigQueryWarehouse:
    """The warehouse of a BigQuery connection; the client is made at the first job."""
    return BigQueryWarehouse(conn, resources)
