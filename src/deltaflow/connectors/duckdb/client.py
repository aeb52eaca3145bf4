"""Connecting to a DuckDB database file, and running one statement in it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deltaflow.connectors._common import scalar
from deltaflow.connectors.protocol import RunResources, split_table
from deltaflow.errors import DestinationError

if TYPE_CHECKING:
    import duckdb

    from deltaflow.config.connections import DuckDBConnection

__all__ = ["connect", "qualified", "scalar"]


def connect(conn: DuckDBConnection, resources: RunResources) -> duckdb.DuckDBPyConnection:
    """The run's connection to this database file, opened once and shared."""
    path = conn.path if conn.path == ":memory:" else str(resources.resolve(conn.path))
    key = f"duckdb:{path}"
    if key not in resources.handles:
        handle = _open(conn, resources, path)
        resources.handles[key] = handle
        resources.closers.append(handle.close)
    shared: duckdb.DuckDBPyConnection = resources.handles[key]
    return shared


def _open(conn: DuckDBConnection, resources: RunResources, path: str) -> duckdb.DuckDBPyConnection:
    import duckdb

    # Without this, a missing table name is looked up among the calling Python frames'
    # variables (DuckDB's replacement scans) instead of failing as a missing table.
    config: dict[str, Any] = {"python_enable_replacements": False}
    if conn.memory_limit:
        config["memory_limit"] = conn.memory_limit
    if conn.threads:
        config["threads"] = conn.threads
    try:
        if path != ":memory:":
            resources.resolve(conn.path).parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(path, config=config)
    except (duckdb.Error, OSError) as exc:
        raise DestinationError(
            f"cannot open DuckDB database '{conn.path}': {exc}",
            hint="check the path; another process may hold the file open",
        ) from exc


def qualified(name: str) -> tuple[str, str]:
    """``a.b`` -> ("a", "b"); a bare name lives in schema ``main``."""
    return split_table(name, "main")
