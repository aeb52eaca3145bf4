"""Connecting to PostgreSQL through ADBC, and running statements on a cursor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deltaflow.config.secrets import remember
from deltaflow.connectors.protocol import split_table
from deltaflow.errors import ConnectionFailedError, ConnectionLostError, SourceError

if TYPE_CHECKING:
    from deltaflow.config.connections import PostgresConnection

__all__ = ["connect", "fetch", "lost", "qualified", "read_failure", "run", "secret_uri"]

#: SQLSTATEs of a connection that went away: class 08, and the server shutting down
LOST_STATES = ("08", "57P01", "57P02", "57P03")
#: what libpq says when the connection went away (the PostgreSQL scanner gives no SQLSTATE)
LOST_WORDS = (
    "server closed the connection",
    "terminating connection",
    "no connection to the server",
    "could not receive data from server",
    "could not send data to server",
    "SSL SYSCALL error",
    "connection is closed",
)


def secret_uri(conn: PostgresConnection) -> str:
    """The connection's libpq URI, its password remembered as secret (see redact)."""
    password = conn.secret_password()
    if password:
        remember(password)
    return conn.uri()


def connect(conn: PostgresConnection) -> Any:
    """A new ADBC connection (transactions on); its password is remembered as secret."""
    from adbc_driver_postgresql import dbapi

    uri = secret_uri(conn)
    try:
        return dbapi.connect(uri)
    except Exception as exc:
        raise ConnectionFailedError(
            f"cannot connect to PostgreSQL at {conn.address()}: {exc}",
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


def lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection to the server went away (rather than that the
    statement was wrong): such a failure is worth a retry."""
    state = str(getattr(exc, "sqlstate", "") or "")
    if state.startswith(LOST_STATES):
        return True
    text = str(exc)
    return any(words in text for words in LOST_WORDS)


def read_failure(
    stream: str, message: str, exc: BaseException
) -> SourceError | ConnectionLostError:
    """The error for a failed read of ``stream``: retryable when the connection was lost."""
    text = f"reading PostgreSQL stream '{stream}' failed: {message}"
    if lost(exc):
        return ConnectionLostError(
            text,
            hint="the connection to PostgreSQL was lost; run the step again (what was "
            "committed is kept), and check the server's log if it repeats",
        )
    return SourceError(text, hint="check the SQL, the table and the connection")
