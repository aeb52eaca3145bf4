"""Pipeline configuration: models, loading, variables and secrets."""

from deltaflow.config.connections import Connection, DuckDBConnection, FilesConnection
from deltaflow.config.loader import (
    LoadedPipeline,
    RunContext,
    build,
    find_pipeline,
    load_pipeline,
    validate_file,
)
from deltaflow.config.models import DestinationSpec, Pipeline, SourceSpec, SyncStep

__all__ = [
    "Connection",
    "DestinationSpec",
    "DuckDBConnection",
    "FilesConnection",
    "LoadedPipeline",
    "Pipeline",
    "RunContext",
    "SourceSpec",
    "SyncStep",
    "build",
    "find_pipeline",
    "load_pipeline",
    "validate_file",
]
