"""Run a pipeline's steps in order and record the run and every step in the run store."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deltaflow.config.loader import LoadedPipeline, RunContext
from deltaflow.config.models import MetricsStep, QualityStep, SyncStep, select_steps
from deltaflow.config.secrets import redact
from deltaflow.connectors.protocol import RunResources
from deltaflow.errors import Code, DeltaFlowError, StepFailedError
from deltaflow.metadata.store import RunRecord, RunStore, StepRecord
from deltaflow.sync.runner import Observer, SyncOutcome, run_sync

log = logging.getLogger("deltaflow.run")

StepRunner = Callable[[Any, LoadedPipeline, RunResources, Observer | None], SyncOutcome]

#: step type -> the function that runs it
STEP_RUNNERS: dict[str, StepRunner] = {
    "sync": lambda step, loaded, res, obs: run_sync(step, loaded.pipeline, res, obs),
    "quality": lambda step, loaded, res, obs: _run_quality(step, loaded, res),
    "metrics": lambda step, loaded, res, obs: _run_metrics(step, loaded, res),
}
AnyStep = SyncStep | QualityStep | MetricsStep


def _run_metrics(step: MetricsStep, loaded: LoadedPipeline, resources: RunResources) -> SyncOutcome:
    from deltaflow.metrics.engine import run_step

    details = run_step(step, loaded.pipeline, resources)
    return SyncOutcome(step.step_id, step.recon_table, "", details=details)


def _run_quality(step: QualityStep, loaded: LoadedPipeline, resources: RunResources) -> SyncOutcome:
    from deltaflow.quality.checks import run_quality

    details = run_quality(step, loaded.pipeline, resources)
    return SyncOutcome(step.table, step.table, "", details=details)


@dataclass
class RunResult:
    run: RunRecord
    steps: list[StepRecord] = field(default_factory=list)
    error: DeltaFlowError | None = None

    @property
    def ok(self) -> bool:
        return self.run.status == "succeeded"


def run_pipeline(
    loaded: LoadedPipeline,
    *,
    context: RunContext,
    store: RunStore,
    observer: Observer | None = None,
    only_steps: Sequence[str] = (),
) -> RunResult:
    """Run the pipeline (or ``only_steps``); failures are recorded and returned, not raised."""
    pipeline = loaded.pipeline
    steps = select_steps(pipeline.steps, only_steps)
    started = time.monotonic()
    result = RunResult(
        RunRecord(
            context.run_id,
            pipeline.pipeline_id,
            context.tenant_id,
            "running",
            _now(),
            pipeline_file=loaded.file,
        )
    )
    store.save_run(result.run)
    resources = RunResources(loaded.base_dir, context.run_id, context.sync)
    try:
        for position, step in enumerate(steps):
            record = _start_step(step, position, resources.run_id, store)
            result.steps.append(record)
            error = _run_step(record, step, loaded, resources, observer, store)
            if error is not None:
                result.error = error
                break
    except KeyboardInterrupt:
        result.error = CANCELLED
        raise
    except BaseException as exc:  # never record a run that blew up as succeeded
        result.error = _classify(exc)
        raise
    finally:
        try:
            resources.close()
        finally:
            _finish(result, steps, started, store)
    return result


CANCELLED = StepFailedError("interrupted (Ctrl-C)", code=Code.RUN_CANCELLED)


def _classify(exc: BaseException) -> DeltaFlowError:
    """A DeltaFlowError as is; anything else as an INTERNAL_ERROR naming its type."""
    if isinstance(exc, DeltaFlowError):
        return exc
    return StepFailedError(
        f"{type(exc).__name__}: {exc}",
        code=Code.INTERNAL_ERROR,
        hint="this is unexpected; rerun with --verbose and report it",
    )


def _start_step(step: AnyStep, position: int, run_id: str, store: RunStore) -> StepRecord:
    record = StepRecord(
        run_id,
        step.step_id,
        step.type,
        "running",
        position,
        started_at=_now(),
        write_mode=step.destination.write_mode if isinstance(step, SyncStep) else None,
    )
    store.save_step(record)
    return record


def _run_step(
    record: StepRecord,
    step: AnyStep,
    loaded: LoadedPipeline,
    resources: RunResources,
    observer: Observer | None,
    store: RunStore,
) -> DeltaFlowError | None:
    started = time.monotonic()
    error: DeltaFlowError | None = None
    try:
        outcome = STEP_RUNNERS[step.type](step, loaded, resources, observer)
        record.status = "succeeded"
        record.stream, record.destination = outcome.stream, outcome.destination
        record.write_mode = outcome.write_mode  # --full-refresh turns a merge into a replace
        record.rows_read, record.rows_loaded = outcome.rows_read, outcome.rows_loaded
        record.table_rows, record.details = outcome.table_rows, outcome.details
    except KeyboardInterrupt:
        _end_step(record, "cancelled", CANCELLED, started, store)
        raise
    except Exception as exc:  # an unexpected error still fails only this run, recorded
        if isinstance(exc.__cause__, KeyboardInterrupt):  # a driver wrapped the Ctrl-C
            _end_step(record, "cancelled", CANCELLED, started, store)
            raise KeyboardInterrupt from exc
        if not isinstance(exc, DeltaFlowError):
            log.debug("step %s failed", step.step_id, exc_info=True)
        record.details = getattr(exc, "details", record.details)  # e.g. every check's result
        error = _classify(exc)
    _end_step(record, "failed" if error else "succeeded", error, started, store)
    return error


def _end_step(
    record: StepRecord,
    status: str,
    error: DeltaFlowError | None,
    started: float,
    store: RunStore,
) -> None:
    record.status = status
    if error is not None:
        record.error_code, record.error_message = error.code, redact(str(error))
    record.ended_at, record.duration_s = _now(), round(time.monotonic() - started, 3)
    store.save_step(record)


def _finish(result: RunResult, steps: Sequence[AnyStep], started: float, store: RunStore) -> None:
    run = result.run
    done = {s.step_id for s in result.steps}
    for position, step in enumerate(steps):
        if step.step_id not in done:
            skipped = StepRecord(run.run_id, step.step_id, step.type, "skipped", position)
            result.steps.append(skipped)
            store.save_step(skipped)
    run.status = (
        "succeeded"
        if result.error is None
        else ("cancelled" if result.error.code == "RUN_CANCELLED" else "failed")
    )
    if result.error is not None:
        run.error_code, run.error_message = result.error.code, redact(str(result.error))
    run.rows_read = sum(s.rows_read or 0 for s in result.steps)
    run.rows_loaded = sum(s.rows_loaded or 0 for s in result.steps)
    run.ended_at, run.duration_s = _now(), round(time.monotonic() - started, 3)
    store.save_run(run)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
