"""Connectors, one module per system, found by the connection's ``type``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deltaflow.errors import UnknownConnectorError, did_you_mean

if TYPE_CHECKING:
    from deltaflow.config.connections import ConnectionBase
    from deltaflow.config.models import DestinationSpec, SourceSpec
    from deltaflow.connectors.base import Destination, RunResources, Source

#: connection type -> module under deltaflow.connectors
REGISTRY: dict[str, str] = {
    "bigquery": "bigquery",
    "duckdb": "duckdb",
    "files": "files",
    "mongodb": "mongodb",
    "postgres": "postgres",
}


def _module(kind: str) -> Any:
    if kind not in REGISTRY:
        raise UnknownConnectorError(
            f"unknown connector '{kind}'.{did_you_mean(kind, REGISTRY)}",
            hint=f"use one of: {', '.join(sorted(REGISTRY))}",
        )
    return importlib.import_module(f"deltaflow.connectors.{REGISTRY[kind]}")


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


def open_destination(
    conn: ConnectionBase, spec: DestinationSpec, resources: RunResources
) -> Destination:
    destination: Destination = _module(conn.kind).open_destination(conn, spec, resources)
    return destination
