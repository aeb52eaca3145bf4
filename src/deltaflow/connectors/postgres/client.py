"""Connecting to PostgreSQL through ADBC, and running statements on a cursor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from deltaflow.config.secrets import remember
from deltaflow.connectors.protocol import split_table
from deltaflow.errors import ConnectionFailedError

if TYPE_CHECKING:
    from deltaflow.config.connections import PostgresConnection

__all__ = ["connect", "fetch", "qualified", "run", "secret_uri"]


def secret_uri(conn: PostgresConnection) -> str:
    """The connection's libpq URI, its password remembered as secret (see redact)."""
    uri = conn.uri()
    password = urlsplit(uri).password
    if password:
        remember(password)
    return uri


def connect(conn: PostgresConnection) -> Any:
    """A new ADBC connection (transactions on); its password is remembered as secret."""
    from adbc_driver_postgresql import dbapi

    uri = secret_uri(conn)
    try:
        return dbapi.connect(uri)
    except Exception as exc:
        raise ConnectionFailedError(
            f"cannot connect to PostgreSQL at {conn.host}:{conn.port}: {exc}",
            hint="check host, port, database, user and password, and that the server runs",
        ) from exc


def qualified(name: str) -> tuple[str, str]:
    """``a.b`` -> ("a", "b"); a bare name lives in schema ``public``."""
    return split_table(name, "public")


def fetch(cur: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one statement."""
    cur.execute(sql, params)
    rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


def run(cur: Any, sql: str, params: list[Any]) -> None:
    """Execute one statement, binding ``params`` only when there are some: ADBC reads a
    parameterised query more slowly."""
    if params:
        cur.execute(sql, params)
    else:
        cur.execute(sql)
