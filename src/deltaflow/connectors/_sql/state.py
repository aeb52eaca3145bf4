"""Incremental state, written once for the SQL engines: the five methods of
``StatefulDestination`` over a table ``_deltaflow_state`` next to the destination table.

An engine plugs in with its SQL facts (``StateSQL``: quoting, parameter markers, the
state table's DDL, how it upserts a record and deletes counting the rows) and a
``StateTable`` subclass's hooks: a session on its connection, whether the state table
exists, the destination table's columns.
"""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from deltaflow.connectors.protocol import StateRecord
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa

STATE_TABLE = "_deltaflow_state"
STATE_COLUMNS = "state_key, cursor, watermark, boundary, run_id, updated_at"


def state_params(record: StateRecord) -> list[Any]:
    """The record's values in ``STATE_COLUMNS`` order (the boundary as a JSON list)."""
    return [
        record.key,
        record.cursor,
        record.watermark,
        json.dumps(sorted(record.boundary)),
        record.run_id,
        record.updated_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    ]


def state_from_row(row: tuple[Any, ...]) -> StateRecord:
    """A record from a row of ``SELECT STATE_COLUMNS``."""
    key, cursor, watermark, boundary, run_id, updated_at = row
    return StateRecord(
        key, cursor, watermark, tuple(json.loads(boundary or "[]")), run_id or "", updated_at or ""
    )


def dollar(index: int) -> str:
    """The ``index``-th parameter (from 0) as DuckDB and PostgreSQL write it: ``$1``, ..."""
    return f"${index + 1}"


@dataclass(frozen=True)
class StateSQL:
    """An engine's SQL for the state table. Templates take ``{table}`` (the quoted state
    table), ``{values}`` (the six parameters of a record), ``{key}`` (the first of them)
    and ``{prefix}`` (the one parameter of a read or delete)."""

    quote: Callable[[str], str] = quote_double
    placeholder: Callable[[int], str] = dollar
    create: str = (
        "CREATE TABLE IF NOT EXISTS {table} (state_key VARCHAR PRIMARY KEY, cursor VARCHAR, "
        "watermark VARCHAR, boundary VARCHAR, run_id VARCHAR, updated_at VARCHAR)"
    )
    upsert: tuple[str, ...] = (
        f"INSERT INTO {{table}} ({STATE_COLUMNS}) VALUES ({{values}}) "
        "ON CONFLICT (state_key) DO UPDATE SET "
        "cursor = excluded.cursor, watermark = excluded.watermark, "
        "boundary = excluded.boundary, run_id = excluded.run_id, "
        "updated_at = excluded.updated_at",
    )
    """Statements that insert or replace one record, in one transaction."""
    delete: tuple[str, ...] = ("DELETE FROM {table} WHERE starts_with(state_key, {prefix})",)
    """Statements that delete the records of a prefix; the first one's first value is
    how many it deletes."""

    def put(self, table: str) -> list[str]:
        """The statements that put one record (its ``state_params`` as parameters)."""
        values = ", ".join(self.placeholder(n) for n in range(6))
        key = self.placeholder(0)
        return [s.format(table=table, values=values, key=key) for s in self.upsert]

    def read(self, table: str) -> str:
        prefix = self.placeholder(0)
        return (
            f"SELECT {STATE_COLUMNS} FROM {table} "
            f"WHERE starts_with(state_key, {prefix}) ORDER BY state_key"
        )

    def deletes(self, table: str) -> list[str]:
        return [s.format(table=table, prefix=self.placeholder(0)) for s in self.delete]


class Session(Protocol):
    """Statements on one connection, in one transaction when the session writes."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first value of the first row."""

    def arrow(self, sql: str) -> pa.Table: ...


S = TypeVar("S", bound=Session)


class StateTable(ABC, Generic[S]):
    """The incremental-state methods of ``StatefulDestination``, for a destination class
    to inherit: it sets ``state_sql`` and ``target`` (its quoted table) and implements
    the hooks on its own kind of session ``S``."""

    state_sql: ClassVar[StateSQL] = StateSQL()
    target: str

    @abstractmethod
    def _session(self, write: bool) -> AbstractContextManager[S]:
        """A session on the destination's database; a writing one commits at its end."""

    @abstractmethod
    def _state_table(self) -> str:
        """The quoted name of the state table, next to the destination table."""

    @abstractmethod
    def _has_state_table(self, session: S) -> bool: ...

    @abstractmethod
    def _column_names(self, session: S) -> Collection[str]:
        """The destination table's columns; none when the table does not exist."""

    def _ensure_state_table(self, session: S) -> None:
        session.execute(self.state_sql.create.format(table=self._state_table()))

    def _max_scope(self, session: S, column: str) -> str:
        """A WHERE clause that narrows ``max(column)`` to where it must be (BigQuery's
        newest partition); '' for the whole table."""
        return ""

    def _put_state(self, session: S, record: StateRecord) -> None:
        """Put one record, in the session's transaction (a load's, or ``write_state``'s)."""
        self._ensure_state_table(session)
        for statement in self.state_sql.put(self._state_table()):
            session.execute(statement, state_params(record))

    def read_states(self, prefix: str) -> list[StateRecord]:
        with self._session(write=False) as session:
            if not self._has_state_table(session):
                return []
            rows = session.rows(self.state_sql.read(self._state_table()), [prefix])
        return [state_from_row(row) for row in rows]

    def write_state(self, record: StateRecord) -> None:
        with self._session(write=True) as session:
            self._put_state(session, record)

    def delete_states(self, prefix: str) -> int:
        with self._session(write=True) as session:
            if not self._has_state_table(session):
                return 0
            counted, *rest = self.state_sql.deletes(self._state_table())
            deleted = session.value(counted, [prefix])
            for statement in rest:
                session.execute(statement, [prefix])
        return int(deleted)

    def cursor_max(self, column: str) -> Any:
        with self._session(write=False) as session:
            if column not in self._column_names(session):
                return None
            scope = self._max_scope(session, column)
            return session.value(
                f"SELECT max({self.state_sql.quote(column)}) FROM {self.target}{scope}"
            )

    def rows_at_max(self, column: str, columns: list[str]) -> pa.Table | None:
        with self._session(write=False) as session:
            if not {column, *columns} <= set(self._column_names(session)):
                return None
            quote = self.state_sql.quote
            c, select = quote(column), ", ".join(quote(n) for n in columns)
            return session.arrow(
                f"SELECT {select} FROM {self.target} "
                f"WHERE {c} = (SELECT max({c}) FROM {self.target})"
            )
