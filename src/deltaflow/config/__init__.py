"""Pipeline configuration: models, loading, variables and secrets.

Names load lazily (the pattern of ``deltaflow/__init__.py``): importing a light
submodule such as ``deltaflow.config.secrets`` or ``deltaflow.config.options`` does not
pull in pydantic and the models, so ``deltaflow --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_EXPORTS = {
    "Connection": "deltaflow.config.connections",
    "DuckDBConnection": "deltaflow.config.connections",
    "FilesConnection": "deltaflow.config.connections",
    "DestinationSpec": "deltaflow.config.models",
    "Pipeline": "deltaflow.config.models",
    "SourceSpec": "deltaflow.config.models",
    "SyncStep": "deltaflow.config.models",
    "LoadedPipeline": "deltaflow.config.loader",
    "RunContext": "deltaflow.config.loader",
    "build": "deltaflow.config.loader",
    "find_pipeline": "deltaflow.config.loader",
    "load_pipeline": "deltaflow.config.loader",
    "validate_file": "deltaflow.config.loader",
}

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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deltaflow.config' has no attribute '{name}'")
