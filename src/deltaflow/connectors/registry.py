"""The connector registry: a connection's ``type`` names the package that serves it.

The only place that imports a connector package by name; everything above the connectors
asks the registry for a source, a destination or a warehouse.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deltaflow.errors import Code, ConfigError, UnknownConnectorError, did_you_mean, require

if TYPE_CHECKING:
    from deltaflow.config.connections import ConnectionBase
    from deltaflow.config.models import DestinationSpec, SourceSpec
    from deltaflow.connectors.protocol import Destination, RunResources, Source, Warehouse
    from deltaflow.schema.types import TableSchema

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
ROW_TYPES = ("decimal", "date", "timestamp", "int", "json")


def row_schema(
    columns: Sequence[str], types: Mapping[str, str], key: tuple[str, ...] = ()
) -> TableSchema:
    """The table ``append_rows`` writes: ``columns`` in order, text unless ``types`` names
    another of ``ROW_TYPES``: decimal (38 digits, 9 after the point), date, timestamp
    (UTC), int (64 bits), json (the engine's JSON type)."""
    from deltaflow.schema.types import Column, LogicalType, TableSchema

    unknown = sorted({t for t in types.values() if t not in ROW_TYPES})
    if unknown:
        raise ConfigError(
            f"unknown row type(s) {', '.join(map(repr, unknown))}",
            hint=f"use one of: {', '.join(ROW_TYPES)} (other columns are text)",
        )
    logical = {
        "decimal": LogicalType("decimal", precision=38, scale=9),
        "date": LogicalType("date"),
        "timestamp": LogicalType("timestamp", unit="us", tz="UTC"),
        "int": LogicalType("int64"),
        "json": LogicalType("json"),
    }
    string = LogicalType("string")
    return TableSchema(
        tuple(Column(c, logical[types[c]] if c in types else string) for c in columns), key
    )


def ensure_rows_table(
    conn: ConnectionBase, resources: RunResources, table: str, schema: TableSchema
) -> None:
    """Create the table of ``schema`` (and its schema or dataset) when missing; a table
    that exists already is evolved to it as the destination allows (columns added)."""
    _row_destination(conn, resources, table, schema.primary_key).prepare(schema)


def append_rows(
    conn: ConnectionBase,
    resources: RunResources,
    table: str,
    rows: list[dict[str, Any]],
    types: Mapping[str, str],
    key: tuple[str, ...] = (),
) -> None:
    """Write a few records (results, reconciliation records, run metadata) to a table of
    a warehouse, created when missing: appended, or merged on ``key``. ``types`` names the
    columns that are not text (see ``row_schema``); a json column's values are any value
    ``json.dumps`` writes (None stays NULL).
    """
    import json

    import pyarrow as pa

    if not rows:
        return
    schema = row_schema(list(rows[0]), types, key)
    as_json = [c for c in rows[0] if types.get(c) == "json"]
    if as_json:
        rows = [
            r | {c: None if r[c] is None else json.dumps(r[c], default=str) for c in as_json}
            for r in rows
        ]
    data = pa.Table.from_pylist(rows, schema=schema.to_arrow())
    mode: Any = "merge" if key else "append"
    destination = _row_destination(conn, resources, table, key)
    destination.prepare(schema)
    reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches())
    destination.load(reader, mode, key)


def _row_destination(
    conn: ConnectionBase, resources: RunResources, table: str, key: tuple[str, ...]
) -> Destination:
    from deltaflow.config.models import DestinationSpec

    mode: Any = "merge" if key else "append"
    spec = DestinationSpec(connection="target", table=table, write_mode=mode, primary_key=list(key))
    return open_destination(conn, spec, resources)
