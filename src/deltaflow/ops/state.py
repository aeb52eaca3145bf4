"""Incremental state (watermarks) of a pipeline's steps: show, set, reset."""

from __future__ import annotations

from pathlib import Path

from deltaflow.connectors.protocol import StateRecord
from deltaflow.ops._pipeline import load
from deltaflow.sync import state
from deltaflow.sync.state import StepState


def _only(step: str | None) -> list[str]:
    return [step] if step else []


def show(pipeline: str, step: str | None = None, configs: Path | None = None) -> list[StepState]:
    """Each incremental step's state records, as committed in its destination."""
    return state.show(load(pipeline, configs), _only(step))


def set_watermark(
    pipeline: str,
    step: str,
    value: str,
    stream: str | None = None,
    configs: Path | None = None,
) -> StateRecord:
    """Set a step's watermark: the next run reads from ``value`` (inclusive)."""
    return state.set_watermark(load(pipeline, configs), step, value, stream)


def reset(pipeline: str, step: str | None = None, configs: Path | None = None) -> int:
    """Forget the watermarks (of ``step`` only, when given); how many records went."""
    return state.reset(load(pipeline, configs), _only(step))
