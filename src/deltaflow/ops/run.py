"""Run a pipeline, or only its quality checks; the run is recorded in the run store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deltaflow.config.loader import LoadedPipeline, RunContext
from deltaflow.config.options import SyncOptions
from deltaflow.errors import NoQualityStepError
from deltaflow.ops._pipeline import load, open_store
from deltaflow.orchestration.runner import RunResult, run_pipeline
from deltaflow.sync.runner import Observer

#: rows read from each source by a trial run (``--test``)
TRIAL_ROWS = 100


@dataclass(frozen=True)
class RunRequest:
    """A pipeline run and its run-time options."""

    pipeline: str
    """Pipeline file, or pipeline id (looked up under ``configs``)."""
    variables: Mapping[str, str] = field(default_factory=dict)
    configs: Path | None = None
    steps: Sequence[str] = ()
    """Run only these steps (all when empty)."""
    tenant: str = "default"
    run_date: dt.date | None = None
    full_refresh: bool = False
    start: str | None = None
    end: str | None = None
    incremental_cursor: str | None = None
    limit: int | None = None
    test: bool = False
    """A trial run: read ``TRIAL_ROWS`` rows per source unless ``limit`` says otherwise."""
    metadata: Path | None = None
    """The run store file (default: ``.deltaflow/runs.db``)."""

    def conflict(self) -> str | None:
        """Why these options cannot go together, if they cannot."""
        if self.full_refresh and self.start:
            return "--full-refresh and --start contradict each other; pass one"
        return None

    def context(self) -> RunContext:
        """The run's built-in variables and incremental overrides."""
        limit = TRIAL_ROWS if self.test and not self.limit else self.limit
        options = SyncOptions(
            self.full_refresh, self.start, self.end, self.incremental_cursor, limit=limit
        )
        return RunContext(tenant_id=self.tenant, run_date=self.run_date, sync=options)


@dataclass(frozen=True)
class PreparedRun:
    """A loaded pipeline with the context it runs in, ready to start."""

    request: RunRequest
    loaded: LoadedPipeline
    context: RunContext


def prepare(request: RunRequest) -> PreparedRun:
    """Load the pipeline with the request's variables, in the request's run context."""
    context = request.context()
    loaded = load(request.pipeline, request.configs, request.variables, context)
    return PreparedRun(request, loaded, context)


def execute(prepared: PreparedRun, observer: Observer | None = None) -> RunResult:
    """Run a prepared pipeline; step failures are in the result, not raised."""
    return run_pipeline(
        prepared.loaded,
        context=prepared.context,
        store=open_store(prepared.request.metadata),
        observer=observer,
        only_steps=list(prepared.request.steps),
    )


def run(request: RunRequest, observer: Observer | None = None) -> RunResult:
    """Load and run a pipeline."""
    return execute(prepare(request), observer)


@dataclass(frozen=True)
class CheckRequest:
    """A run of the pipeline's quality steps only."""

    pipeline: str
    variables: Mapping[str, str] = field(default_factory=dict)
    configs: Path | None = None
    steps: Sequence[str] = ()
    """Only these quality steps (all when empty)."""
    metadata: Path | None = None


def check(request: CheckRequest) -> RunResult:
    """Run only the quality steps; raise ``NoQualityStepError`` when there are none."""
    context = RunContext()
    loaded = load(request.pipeline, request.configs, request.variables, context)
    every = [s.step_id for s in loaded.pipeline.steps if s.type == "quality"]
    quality = [s for s in every if s in request.steps] if request.steps else every
    if not quality:
        named = f" named {', '.join(request.steps)}" if request.steps else ""
        raise NoQualityStepError(
            f"pipeline {loaded.pipeline.pipeline_id} has no quality step{named} "
            f"(quality steps: {', '.join(every) or 'none'})"
        )
    store = open_store(request.metadata)
    return run_pipeline(loaded, context=context, store=store, only_steps=quality)
