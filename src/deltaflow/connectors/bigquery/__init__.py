"""BigQuery, as source and destination, through the official client libraries.

A source reads a table, or the result of a query, over the Storage Read API as Arrow
record batches; each stream of the read session is a split.

Tables are created from the logical schema (``deltaflow.schema.mappings.BIGQUERY_TYPES``)
with their partitioning and clustering. Loads write the batches to a Parquet file and
load it with a load job (never streaming inserts): ``append`` and ``replace`` load
straight into the table (a load job is atomic: WRITE_APPEND or WRITE_TRUNCATE, which
keeps partitioning and clustering); ``merge`` loads a staging table next to the target
and applies one MERGE on the primary key, the last row of a repeated key winning.

Every API call has a timeout (``timeout`` on the connection); the client retries only
errors BigQuery marks as retryable, within that deadline.

The package, one role a file: ``clients`` (the REST and Storage Read clients, the retry
policy, SQL on a connection), ``types`` (names, values and types BigQuery can hold),
``source``, ``destination`` (create, load, apply), ``table`` (the handle the destination's
parts share), ``state`` (the incremental state table) and ``evolution`` (schema changes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaflow.connectors.bigquery.clients import client, job_retry, read_client
from deltaflow.connectors.bigquery.destination import (
    QUARANTINE_DDL,
    SEQUENCE,
    STAGING_PREFIX,
    BigQueryDestination,
    Written,
)
from deltaflow.connectors.bigquery.source import BigQuerySource
from deltaflow.connectors.bigquery.state import STATE_DDL
from deltaflow.connectors.bigquery.types import MAX_NAME, bigquery_names, bigquery_values
from deltaflow.connectors.protocol import RunResources

if TYPE_CHECKING:
    from deltaflow.config.connections import BigQueryConnection
    from deltaflow.config.models import DestinationSpec
    from deltaflow.config.sources import SqlSource

__all__ = [
    "MAX_NAME",
    "QUARANTINE_DDL",
    "SEQUENCE",
    "STAGING_PREFIX",
    "STATE_DDL",
    "BigQueryDestination",
    "BigQuerySource",
    "Written",
    "bigquery_names",
    "bigquery_values",
    "client",
    "job_retry",
    "open_destination",
    "open_source",
    "read_client",
]


def open_source(
    conn: BigQueryConnection,
    spec: SqlSource,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> BigQuerySource:
    return BigQuerySource(conn, spec, resources, parallelism, batch_size)


def open_destination(
    conn: BigQueryConnection, spec: DestinationSpec, resources: RunResources
) -> BigQueryDestination:
    return BigQueryDestination(conn, spec, resources)
