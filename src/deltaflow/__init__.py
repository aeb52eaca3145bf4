"""DeltaFlow: config-as-code data pipelines on an Arrow data plane.

The public API is what ``__all__`` lists (a test pins it). Everything loads lazily, so
``import deltaflow`` stays fast and imports neither pyarrow, duckdb nor any driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from deltaflow.config.loader import LoadedPipeline, RunContext, load_pipeline
    from deltaflow.config.models import Pipeline
    from deltaflow.errors import DeltaFlowError
    from deltaflow.metadata.store import RunStore
    from deltaflow.orchestration.runner import RunResult, run_pipeline

_EXPORTS = {
    "DeltaFlowError": "deltaflow.errors",
    "LoadedPipeline": "deltaflow.config.loader",
    "Pipeline": "deltaflow.config.models",
    "RunContext": "deltaflow.config.loader",
    "RunResult": "deltaflow.orchestration.runner",
    "RunStore": "deltaflow.metadata.store",
    "load_pipeline": "deltaflow.config.loader",
    "run_pipeline": "deltaflow.orchestration.runner",
}

__all__ = [
    "DeltaFlowError",
    "LoadedPipeline",
    "Pipeline",
    "RunContext",
    "RunResult",
    "RunStore",
    "__version__",
    "load_pipeline",
    "run_pipeline",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deltaflow' has no attribute '{name}'")
