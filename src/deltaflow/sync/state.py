"""Incremental state of a pipeline's steps: show, set and reset (``deltaflow state``).

The state lives in each destination, next to the table it describes (see
``deltaflow.connectors._common.STATE_TABLE``); these functions find it from the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from deltaflow import connectors
from deltaflow.config.loader import LoadedPipeline
from deltaflow.config.models import SyncStep, select_steps
from deltaflow.connectors.protocol import RunResources, StatefulDestination, StateRecord, encode
from deltaflow.errors import ConfigError
from deltaflow.sync.incremental import decode
from deltaflow.sync.streams import default_parallelism
from deltaflow.sync.window import state_key


@dataclass(frozen=True)
class StepState:
    step_id: str
    destination: str
    records: list[StateRecord]


def incremental_steps(loaded: LoadedPipeline, only: Sequence[str] = ()) -> list[SyncStep]:
    """The pipeline's incremental sync steps (those in ``only``, if given); raises if none."""
    steps = [
        s
        for s in select_steps(loaded.pipeline.steps, only)
        if isinstance(s, SyncStep) and s.incremental
    ]
    if not steps:
        raise ConfigError(
            f"pipeline {loaded.pipeline.pipeline_id} has no incremental step"
            + (f" among {', '.join(only)}" if only else ""),
            hint="add 'incremental: {cursor: <column>}' to a sync step",
        )
    return steps


@contextmanager
def _opened(
    loaded: LoadedPipeline, step: SyncStep
) -> Iterator[tuple[StatefulDestination, list[str]]]:
    """The step's destination and the state key of each of its sources, for the duration."""
    pipeline = loaded.pipeline
    resources = RunResources(loaded.base_dir, "state")
    try:
        keys = []
        for spec in step.all_sources:
            source = connectors.open_source(
                pipeline.connections[spec.connection],
                spec,
                resources,
                step.batch_size,
                default_parallelism(),
            )
            keys.append(state_key(pipeline.pipeline_id, step.step_id, source.name))
        destination = connectors.open_destination(
            pipeline.connections[step.destination.connection], step.destination, resources
        )
        assert isinstance(destination, StatefulDestination)
        yield destination, keys
    finally:
        resources.close()


def _prefix(loaded: LoadedPipeline, step: SyncStep) -> str:
    """The start every state key of the step shares."""
    return state_key(loaded.pipeline.pipeline_id, step.step_id, "")


def show(loaded: LoadedPipeline, only: Sequence[str] = ()) -> list[StepState]:
    """The state records of each incremental step, read from its destination."""
    out = []
    for step in incremental_steps(loaded, only):
        with _opened(loaded, step) as (destination, _keys):
            records = destination.read_states(_prefix(loaded, step))
            out.append(StepState(step.step_id, destination.name, records))
    return out


def set_watermark(
    loaded: LoadedPipeline, step_id: str, value: str, stream: str | None = None
) -> StateRecord:
    """Set a step's watermark (of one ``stream`` when the step has several sources): the
    next run reads from ``value`` (inclusive)."""
    (step,) = incremental_steps(loaded, [step_id])
    assert step.incremental is not None
    watermark = encode(decode(value, step.incremental.cursor_type, step.incremental.timezone))
    with _opened(loaded, step) as (destination, keys):
        streams = [k.rsplit("/", 1)[1] for k in keys]
        if (stream is None and len(keys) > 1) or (stream is not None and stream not in streams):
            raise ConfigError(
                f"step '{step_id}' has the streams {', '.join(streams)}: name one",
                hint="pass --stream NAME",
            )
        key = keys[streams.index(stream)] if stream else keys[0]
        record = StateRecord(key, step.incremental.cursor, watermark, (), "deltaflow state set")
        destination.write_state(record)
    return record


def reset(loaded: LoadedPipeline, only: Sequence[str] = ()) -> int:
    """Forget the steps' state: the next run starts from MAX(cursor) of the destination
    (or the on_empty rule when it is empty)."""
    removed = 0
    for step in incremental_steps(loaded, only):
        with _opened(loaded, step) as (destination, _keys):
            removed += destination.delete_states(_prefix(loaded, step))
    return removed
