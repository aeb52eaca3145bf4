"""The connector registry: a connection's ``type`` names the package that serves it.

The only place that imports a connector package by name; everything above the connectors
asks the registry for a source, a destination or a warehouse.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deltaflow.errors import Code, ConfigError, UnknownConnectorError, did_you_mean, require

if TYPE_CHECKING:
    from deltaflow.config.connections import ConnectionBase
    from deltaflow.config.models import DestinationSpec, SourceSpec
    from deltaflow.connectors.protocol import Destination, RunResources, Source, Warehouse

#: connection type -> module under deltaflow.connectors
REGISTRY: dict[str, str] = {
    "bigquery": "bigquery",
    "duckdb": "duckdb",
    "files": "files",
    "mongodb": "mongodb",
    "postgres": "postgres",
}


#: connection type -> the extra that installs its drivers, and the modules it needs
DRIVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bigquery": ("bigquery", ("google.cloud.bigquery", "google.cloud.bigquery_storage_v1")),
    "mongodb": ("mongodb", ("pymongo", "bson")),
    "postgres": ("postgres", ("adbc_driver_postgresql", "duckdb_extension_postgres_scanner")),
}


def _package(kind: str) -> str:
    """The package under deltaflow.connectors that serves ``kind``, its drivers checked:
    a missing extra is a MissingDependencyError naming the pip command."""
    if kind not in REGISTRY:
        raise UnknownConnectorError(
            f"unknown connector '{kind}'.{did_you_mean(kind, REGISTRY)}",
            hint=f"use one of: {', '.join(sorted(REGISTRY))}",
        )
    if kind in DRIVERS:
        extra, modules = DRIVERS[kind]
        require(extra, modules, f"the {kind} connector")
    return REGISTRY[kind]


def _module(kind: str) -> Any:
    return importlib.import_module(f"deltaflow.connectors.{_package(kind)}")


def open_source(
    conn: ConnectionBase,
    spec: SourceSpec,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> Source:
    """The source of one stream; ``parallelism`` is how many splits the engine reads at once."""
    module = _module(conn.kind)
    source: Source = module.open_source(conn, spec, resources, batch_size, parallelism)
    return source


def open_warehouse(conn: ConnectionBase, resources: RunResources) -> Warehouse:
    """The warehouse of a connection, for SQL run inside it (checks, metrics, reconcile,
    quarantine); a connection type that is no warehouse is a ConfigError naming those that are."""
    from deltaflow.config.connections import warehouse_types

    package = _package(conn.kind)
    if not conn.is_warehouse:
        raise ConfigError(
            f"connection type '{conn.kind}' is not a warehouse: it cannot run SQL",
            hint=f"point 'connection' at one of: {', '.join(warehouse_types())}",
            code=Code.CONFIG_NOT_A_WAREHOUSE,
        )
    module = importlib.import_module(f"deltaflow.connectors.{package}.warehouse")
    warehouse: Warehouse = module.open_warehouse(conn, resources)
    return warehouse


def open_destination(
    conn: ConnectionBase, spec: DestinationSpec, resources: RunResources
) -> Destination:
    destination: Destination = _module(conn.kind).open_destination(conn, spec, resources)
    return destination


#: the types ``append_rows`` writes by name; other columns are text
ROW_TYPES = ("decimal", "date", "timestamp", "int")


def append_rows(
    conn: ConnectionBase,
    resources: RunResources,
    table: str,
    rows: list[dict[str, Any]],
    types: dict[str, str],
    key: tuple[str, ...] = (),
) -> None:
    """Write a few records (results, reconciliation records) to a table of a warehouse,
    created when missing: appended, or merged on ``key``. ``types`` names the columns
    that are not text: decimal (38 digits, 9 after the point), date, timestamp (UTC), int.
    """
    import pyarrow as pa

    from deltaflow.config.models import DestinationSpec
    from deltaflow.schema.types import TableSchema

    if not rows:
        return
    arrow = {
        "decimal": pa.decimal128(38, 9),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "int": pa.int64(),
    }
    fields = [pa.field(k, arrow[types[k]] if k in types else pa.string()) for k in rows[0]]
    data = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    mode: Any = "merge" if key else "append"
    spec = DestinationSpec(connection="target", table=table, write_mode=mode, primary_key=list(key))
    destination = open_destination(conn, spec, resources)
    destination.prepare(TableSchema.from_arrow(data.schema, primary_key=key))
    reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches())
    destination.load(reader, mode, key)
