"""Connectors: the protocol (``protocol``), the registry that finds a connector by its
connection's ``type`` (``registry``), and one package per system."""

from deltaflow.connectors.registry import (
    REGISTRY,
    append_rows,
    open_destination,
    open_source,
    open_warehouse,
)

__all__ = ["REGISTRY", "append_rows", "open_destination", "open_source", "open_warehouse"]
