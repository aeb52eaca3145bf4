"""What the use cases share: loading a pipeline, the run store, a run id."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from deltaflow.config.loader import LoadedPipeline, RunContext, load_pipeline
from deltaflow.metadata.store import RunStore, default_store_path


def load(
    pipeline: str,
    configs: Path | None = None,
    variables: Mapping[str, str] | None = None,
    context: RunContext | None = None,
) -> LoadedPipeline:
    """The pipeline file (or id, looked up under ``configs``), validated and rendered."""
    return load_pipeline(pipeline, configs=configs, cli_vars=variables, context=context)


def open_store(path: Path | None) -> RunStore:
    """The run store at ``path``, or at the default place."""
    return RunStore(path or default_store_path())


def new_run_id() -> str:
    """An id for the connections one use case opens."""
    return uuid.uuid4().hex[:16]
