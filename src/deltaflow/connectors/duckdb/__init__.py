"""DuckDB: the embedded default warehouse, as source and destination.

- ``client``: the run's shared connection to a database file, one-statement queries;
- ``source``: a table or query read as Arrow record batches;
- ``destination``: loads in one transaction per load (append, replace, merge), schema
  evolution, the incremental state table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaflow.connectors.duckdb.client import connect, qualified, scalar
from deltaflow.connectors.duckdb.destination import (
    INSERT_CHUNK_ROWS,
    STAGING_PREFIX,
    DuckDBDestination,
)
from deltaflow.connectors.duckdb.source import LOSSY_TYPES, DuckDBSource

if TYPE_CHECKING:
    from deltaflow.config.connections import DuckDBConnection
    from deltaflow.config.models import DestinationSpec
    from deltaflow.config.sources import SqlSource
    from deltaflow.connectors.protocol import RunResources

__all__ = [
    "INSERT_CHUNK_ROWS",
    "LOSSY_TYPES",
    "STAGING_PREFIX",
    "DuckDBDestination",
    "DuckDBSource",
    "connect",
    "open_destination",
    "open_source",
    "qualified",
    "scalar",
]


def open_source(
    conn: DuckDBConnection,
    spec: SqlSource,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> DuckDBSource:
    """DuckDB parallelises a query itself: one split whatever ``parallelism``."""
    return DuckDBSource(connect(conn, resources), spec, batch_size)


def open_destination(
    conn: DuckDBConnection, spec: DestinationSpec, resources: RunResources
) -> DuckDBDestination:
    assert spec.table is not None
    return DuckDBDestination(connect(conn, resources), spec.table, spec.on_schema_change)
