"""The incremental state of a BigQuery destination, through the state-table methods the
SQL engines share (``deltaflow.connectors._sql.state``): BigQuery's state-table SQL, a
session of query jobs, and the hooks (the state table next to the destination, the
table's columns, the cursor's maximum read from the newest partition).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from deltaflow.connectors._sql.state import (
    STATE_COLUMNS,
    STATE_TABLE,
    StateSQL,
    StateTable,
    state_params,
)
from deltaflow.connectors.bigquery.table import DestinationTable
from deltaflow.connectors.bigquery.types import _literal
from deltaflow.schema.mappings import quote_backtick

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.connectors.protocol import StateRecord

log = logging.getLogger("deltaflow.bigquery")

#: the state table, next to the destination (``{table}`` is the quoted name)
STATE_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (state_key STRING NOT NULL, `cursor` STRING, "
    "watermark STRING, boundary STRING, run_id STRING, updated_at STRING)"
)

#: BigQuery's state-table SQL: named parameters, a record replaced by delete then insert,
#: and a delete counted before it runs (BigQuery's DML returns no rows)
BQ_STATE_SQL = StateSQL(
    quote=quote_backtick,
    placeholder=lambda n: f"@p{n}",
    create=STATE_DDL,
    upsert=(
        "DELETE FROM {table} WHERE state_key = {key}",
        f"INSERT INTO {{table}} ({STATE_COLUMNS.replace('cursor', '`cursor`')}) "
        "VALUES ({values})",
    ),
    delete=(
        "SELECT count(*) FROM {table} WHERE STARTS_WITH(state_key, {prefix})",
        "DELETE FROM {table} WHERE STARTS_WITH(state_key, {prefix})",
    ),
)

Params = dict[str, str | None]


def named(params: Sequence[Any]) -> Params:
    """Positional parameters as the named ones ``BQ_STATE_SQL`` writes: ``p0``, ``p1``, ..."""
    return {f"p{n}": value for n, value in enumerate(params)}


def _record_placeholder(i: int) -> Callable[[int], str]:
    """Record ``i``'s ``n``-th parameter in a script of several: ``@s<i>_<n>``."""
    return lambda n: f"@s{i}_{n}"


class JobSession:
    """Query jobs on a destination's dataset, as the state table's ``Session``.

    A reading session runs each statement as a query job. A writing session runs what
    it reads at once and keeps what it executes, to run as one transaction script when
    it commits (nothing runs when it ends with an error)."""

    def __init__(self, table: DestinationTable, write: bool):
        self.table = table
        self.write = write
        self.statements: list[str] = []
        self.params: Params = {}
        self.found: dict[str, Any] = {}

    def add(self, sql: str, params: Mapping[str, str | None] | None = None) -> None:
        """A statement with named parameters: run now when reading, kept for the script
        when writing."""
        if not self.write:
            self.table._query(sql, dict(params or {}))
            return
        self.statements.append(sql)
        self.params.update(params or {})

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.add(sql, named(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.table._query(sql, named(params))

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.rows(sql, params)[0][0]

    def arrow(self, sql: str) -> pa.Table:
        handle = self.table
        job = handle.client.query(sql, retry=handle.retry, timeout=handle.conn.timeout)
        rows: pa.Table = job.to_arrow(create_bqstorage_client=False)
        return rows

    def find(self, table_id: str) -> Any:
        """The table (fetched once a session), or None when it does not exist."""
        if table_id not in self.found:
            self.found[table_id] = self.table._find_table(table_id)
        return self.found[table_id]

    def commit(self) -> None:
        """Run the kept statements as one transaction script."""
        if self.statements:
            script = ";\n".join(["BEGIN TRANSACTION", *self.statements, "COMMIT TRANSACTION"])
            self.table._query(script + ";", self.params)


class IncrementalState(DestinationTable, StateTable[JobSession]):
    """The state table's records and the cursor's high-water mark of a destination (the
    methods are ``StateTable``'s; these are BigQuery's hooks)."""

    state_sql = BQ_STATE_SQL

    @contextmanager
    def _session(self, write: bool) -> Iterator[JobSession]:
        session = JobSession(self, write)
        yield session
        session.commit()

    def _state_table(self) -> str:
        return self._target(STATE_TABLE)

    def _has_state_table(self, session: JobSession) -> bool:
        return session.find(f"{self.conn.project}.{self.dataset}.{STATE_TABLE}") is not None

    def _column_names(self, session: JobSession) -> Collection[str]:
        table = session.find(self.table_id)
        return () if table is None else [f.name for f in table.schema]

    def _ensure_state_table(self, session: JobSession) -> None:
        """The dataset and the state table, created (outside any transaction) when missing."""
        self.client.create_dataset(
            f"{self.conn.project}.{self.dataset}",
            exists_ok=True,
            retry=self.retry,
            timeout=self.conn.timeout,
        )
        self._ensure(None, STATE_DDL)

    def _put_states(self, session: JobSession, records: Sequence[StateRecord]) -> None:
        """Put several records in a writing session's script (a load's): record ``i``'s
        values are named ``s<i>_0``, ``s<i>_1``, ... so that no two records share one."""
        for i, record in enumerate(records):
            sql = replace(BQ_STATE_SQL, placeholder=_record_placeholder(i))
            values = {f"s{i}_{n}": v for n, v in enumerate(state_params(record))}
            for statement in sql.put(self._ensure(None, STATE_DDL)):
                session.add(statement, values)

    def _max_scope(self, session: JobSession, column: str) -> str:
        """Only the newest partition, when the table is partitioned by ``column``."""
        return self._newest_partition(session.find(self.table_id), column)

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
