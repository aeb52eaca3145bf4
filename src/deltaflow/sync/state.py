"""Incremental state of a pipeline's steps: show, set and reset (``deltaflow state``).

The state lives in each destination, next to the table it describes (see
``deltaflow.connectors.base.STATE_TABLE``); these functions find it from the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from deltaflow import connectors
from deltaflow.config.loader import LoadedPipeline
from deltaflow.config.models import SyncStep
from deltaflow.connectors.base import RunResources, StatefulDestination, StateRecord
from deltaflow.errors import ConfigError
from deltaflow.sync.incremental import decode, encode
from deltaflow.sync.runner import default_parallelism, state_key


@dataclass(frozen=True)
class StepState:
    step_id: str
    destination: str
    records: list[StateRecord]


def incremental_steps(loaded: LoadedPipeline, only: Sequence[str] = ()) -> list[SyncStep]:
    from deltaflow.orchestration.runner import select_steps

    steps = [s for s in select_steps(loaded.pipeline.steps, only) if s.incremental]
    if not steps:
        raise ConfigError(
            f"pipeline {loaded.pipeline.pipeline_id} has no incremental step"
            + (f" among {', '.join(only)}" if only else ""),
            hint="add 'incremental: {cursor: <column>}' to a sync step",
        )
    return steps


@contextmanager
def _opened(loaded: LoadedPipeline, step: SyncStep) -> Iterator[tuple[StatefulDestination, str]]:
    """The step's destination and its state key, open for the duration."""
    pipeline = loaded.pipeline
    resources = RunResources(loaded.base_dir, "state")
    try:
        source = connectors.open_source(
            pipeline.connections[step.source.connection],
            step.source,
            resources,
            step.batch_size,
            default_parallelism(),
        )
        destination = connectors.open_destination(
            pipeline.connections[step.destination.connection], step.destination, resources
        )
        assert isinstance(destination, StatefulDestination)
        yield destination, state_key(pipeline.pipeline_id, step.step_id, source.name)
    finally:
        resources.close()


def show(loaded: LoadedPipeline, only: Sequence[str] = ()) -> list[StepState]:
    out = []
    for step in incremental_steps(loaded, only):
        with _opened(loaded, step) as (destination, key):
            prefix = key.rsplit("/", 1)[0] + "/"
            out.append(StepState(step.step_id, destination.name, destination.read_states(prefix)))
    return out


def set_watermark(loaded: LoadedPipeline, step_id: str, value: str) -> StateRecord:
    """Set a step's watermark: the next run reads from ``value`` (inclusive)."""
    (step,) = incremental_steps(loaded, [step_id])
    assert step.incremental is not None
    watermark = encode(decode(value, step.incremental.cursor_type, step.incremental.timezone))
    with _opened(loaded, step) as (destination, key):
        record = StateRecord(key, step.incremental.cursor, watermark, (), "deltaflow state set")
        destination.write_state(record)
    return record


def reset(loaded: LoadedPipeline, only: Sequence[str] = ()) -> int:
    """Forget the steps' state: the next run starts from MAX(cursor) of the destination
    (or the on_empty rule when it is empty)."""
    removed = 0
    for step in incremental_steps(loaded, only):
        with _opened(loaded, step) as (destination, key):
            removed += destination.delete_states(key.rsplit("/", 1)[0] + "/")
    return removed
