"""PostgreSQL, as source and destination.

- ``client``: ADBC connections (the password remembered as secret), one-statement queries;
- ``catalog``: a relation's columns, their logical types and how to read them;
- ``source``: a table (ctid-range splits in one exported snapshot) or a query, read as
  Arrow record batches through ADBC or ``scanner`` (DuckDB's PostgreSQL scanner);
- ``destination``: loads by binary COPY in one transaction (``ingest``: what COPY can
  write straight), schema evolution (``types``), the incremental state table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaflow.connectors.postgres.catalog import PgColumn, describe
from deltaflow.connectors.postgres.client import (
    connect,
    qualified,
    secret_uri,
)
from deltaflow.connectors.postgres.destination import STAGING_PREFIX, PostgresDestination
from deltaflow.connectors.postgres.scanner import scanner_extension
from deltaflow.connectors.postgres.source import PostgresSource

if TYPE_CHECKING:
    from deltaflow.config.connections import PostgresConnection
    from deltaflow.config.models import DestinationSpec
    from deltaflow.config.sources import SplitSqlSource
    from deltaflow.connectors.protocol import RunResources

__all__ = [
    "STAGING_PREFIX",
    "PgColumn",
    "PostgresDestination",
    "PostgresSource",
    "connect",
    "describe",
    "open_destination",
    "open_source",
    "qualified",
    "scanner_extension",
    "secret_uri",
]


def open_source(
    conn: PostgresConnection,
    spec: SplitSqlSource,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> PostgresSource:
    return PostgresSource(conn, spec, batch_size, parallelism, resources)


def open_destination(
    conn: PostgresConnection, spec: DestinationSpec, resources: RunResources
) -> PostgresDestination:
    return PostgresDestination(conn, spec)
