"""The handle every part of a BigQuery destination works through: the table's names,
the run's client and retry, one query job at a time (its bytes counted), and the
companion tables (state, quarantine) created next to the table on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deltaflow.connectors._common import STATE_TABLE
from deltaflow.connectors.bigquery.clients import client, job_retry
from deltaflow.connectors.protocol import RunResources, split_table
from deltaflow.schema.mappings import quote_backtick

if TYPE_CHECKING:
    from deltaflow.config.connections import BigQueryConnection
    from deltaflow.config.models import DestinationSpec


class DestinationTable:
    """A destination table's handle: its names, its client and the jobs run on it
    (counted for the run's details), and the companion tables made next to it."""

    def __init__(self, conn: BigQueryConnection, spec: DestinationSpec, resources: RunResources):
        assert spec.table is not None
        self.conn = conn
        self.spec = spec
        self.resources = resources
        self.dataset, self.table = split_table(spec.table, conn.dataset)
        self.name = f"{self.dataset}.{self.table}"
        self.table_id = f"{conn.project}.{self.dataset}.{self.table}"
        self.target = self._target()  # the table's quoted name
        self.columns: dict[str, str] = {}  # name -> field type of the existing table
        self.renamed: dict[str, str] = {}  # source column -> its valid BigQuery name
        self.nested_renamed: dict[str, str] = {}  # path of a nested field -> its new path
        self.jobs: dict[str, int] = {}
        self.merged: dict[str, int] = {}
        """The keys the last merge inserted and updated."""
        self.ensured: set[str] = set()  # companion tables known to exist

    @property
    def client(self) -> Any:
        return client(self.conn, self.resources)

    @property
    def retry(self) -> Any:
        return job_retry(self.conn)

    def _get_table(self, table_id: str) -> Any:
        return self.client.get_table(table_id, retry=self.retry, timeout=self.conn.timeout)

    def _find_table(self, table_id: str) -> Any:
        """The table, or None when it (or its dataset) does not exist."""
        from google.api_core.exceptions import NotFound

        try:
            return self._get_table(table_id)
        except NotFound:
            return None

    def _target(self, table: str | None = None) -> str:
        return quote_backtick(f"{self.conn.project}.{self.dataset}.{table or self.table}")

    def _query(
        self, sql: str, params: dict[str, str | None] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one query job (``@name`` parameters are STRINGs); its bytes processed and
        billed go into the run's details."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(name, "STRING", value)
                for name, value in (params or {}).items()
            ]
        )
        job = self.client.query(sql, job_config=config, retry=self.retry, timeout=self.conn.timeout)
        rows = [tuple(r) for r in job.result(retry=self.retry, timeout=self.conn.timeout)]
        self._count("query_jobs", 1)
        self._count("bytes_processed", job.total_bytes_processed or 0)
        self._count("bytes_billed", job.total_bytes_billed or 0)
        return rows

    def _count(self, key: str, value: int) -> None:
        self.jobs[key] = self.jobs.get(key, 0) + int(value)

    def _ensure(self, suffix: str | None, ddl: str) -> str:
        """The quoted name of a table next to the destination (``<table><suffix>``, or the
        state table), created with ``ddl`` when missing."""
        name = f"{self.table}{suffix}" if suffix else STATE_TABLE
        target = self._target(name)
        if name not in self.ensured:
            self._query(ddl.format(table=target))
            self.ensured.add(name)
        return target
