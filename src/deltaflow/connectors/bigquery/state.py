"""The incremental state of a BigQuery destination: the state table's records (read,
written, deleted by key prefix), their SQL for the load transaction, and the cursor's
maximum and the rows at it, read from the destination table.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from deltaflow.connectors._common import STATE_COLUMNS, STATE_TABLE, state_from_row, state_params
from deltaflow.connectors.bigquery.table import DestinationTable
from deltaflow.connectors.bigquery.types import _literal
from deltaflow.connectors.protocol import StateRecord
from deltaflow.schema.mappings import quote_backtick

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("deltaflow.bigquery")

#: the state table, next to the destination (``{table}`` is the quoted name)
STATE_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (state_key STRING NOT NULL, `cursor` STRING, "
    "watermark STRING, boundary STRING, run_id STRING, updated_at STRING)"
)


def _state_sql(table: str, record: StateRecord, i: int, params: dict[str, str | None]) -> list[str]:
    """Statements that put one state record (its values as parameters ``@s<i>_<n>``)."""
    values = state_params(record)
    names = [f"s{i}_{n}" for n in range(len(values))]
    params.update(zip(names, values, strict=True))
    return [
        f"DELETE FROM {table} WHERE state_key = @{names[0]}",
        f"INSERT INTO {table} ({STATE_COLUMNS.replace('cursor', '`cursor`')}) "
        f"VALUES ({', '.join('@' + n for n in names)})",
    ]


class IncrementalState(DestinationTable):
    """The state table's records and the cursor's high-water mark of a destination."""

    def read_states(self, prefix: str) -> list[StateRecord]:
        if self._find_table(f"{self.conn.project}.{self.dataset}.{STATE_TABLE}") is None:
            return []
        rows = self._query(
            f"SELECT {STATE_COLUMNS} FROM {self._target(STATE_TABLE)} "
            "WHERE STARTS_WITH(state_key, @prefix) ORDER BY state_key",
            {"prefix": prefix},
        )
        return [state_from_row(row) for row in rows]

    def write_state(self, record: StateRecord) -> None:
        self.client.create_dataset(
            f"{self.conn.project}.{self.dataset}",
            exists_ok=True,
            retry=self.retry,
            timeout=self.conn.timeout,
        )
        params: dict[str, str | None] = {}
        statements = _state_sql(self._ensure(None, STATE_DDL), record, 0, params)
        script = ";\n".join(["BEGIN TRANSACTION", *statements, "COMMIT TRANSACTION"])
        self._query(script + ";", params)

    def delete_states(self, prefix: str) -> int:
        if self._find_table(f"{self.conn.project}.{self.dataset}.{STATE_TABLE}") is None:
            return 0
        state = self._target(STATE_TABLE)
        where = "WHERE STARTS_WITH(state_key, @prefix)"
        ((count,),) = self._query(f"SELECT count(*) FROM {state} {where}", {"prefix": prefix})
        self._query(f"DELETE FROM {state} {where}", {"prefix": prefix})
        return int(count)

    def cursor_max(self, column: str) -> Any:
        """MAX(column); when the table is partitioned by that column, only its newest
        partition is scanned."""
        table = self._find_table(self.table_id)
        if table is None or column not in {f.name for f in table.schema}:
            return None
        ((top,),) = self._query(
            f"SELECT MAX({quote_backtick(column)}) FROM {self._target()}"
            + self._newest_partition(table, column)
        )
        return top

    def _newest_partition(self, table: Any, column: str) -> str:
        """`` WHERE column >= <start of the newest partition>``, or '' when the table is
        not partitioned by ``column`` or BigQuery does not say."""
        partitioning = table.time_partitioning
        if partitioning is None or partitioning.field != column:
            return ""
        rows = self._query(
            "SELECT MAX(partition_id) FROM "
            + quote_backtick(f"{self.conn.project}.{self.dataset}.INFORMATION_SCHEMA.PARTITIONS")
            + " WHERE table_name = @table AND total_rows > 0 "
            "AND partition_id NOT IN ('__NULL__', '__UNPARTITIONED__')",
            {"table": self.table},
        )
        newest = rows[0][0] if rows else None
        if not newest or not str(newest).isdigit():
            return ""
        start = dt.datetime.strptime(str(newest), "%Y%m%d%H"[: len(str(newest)) - 2])
        kind = {f.name: f.field_type for f in table.schema}[column]
        log.debug("MAX(%s) of %s read from partition %s on", column, self.name, newest)
        return f" WHERE {quote_backtick(column)} >= {_literal(start, kind)}"

    def rows_at_max(self, column: str, columns: list[str]) -> pa.Table | None:
        table = self._find_table(self.table_id)
        if table is None or not {column, *columns} <= {f.name for f in table.schema}:
            return None
        c = quote_backtick(column)
        select = ", ".join(quote_backtick(n) for n in columns)
        job = self.client.query(
            f"SELECT {select} FROM {self._target()} "
            f"WHERE {c} = (SELECT MAX({c}) FROM {self._target()})",
            retry=self.retry,
            timeout=self.conn.timeout,
        )
        rows: pa.Table = job.to_arrow(create_bqstorage_client=False)
        return rows
