"""Quarantined records of a pipeline's sync steps: list, show, replay, purge.

Show, replay and purge yield one item at a time, so a front door can print progress;
their connections close when the iteration ends, is closed, or fails.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from deltaflow import quarantine as held
from deltaflow.config.loader import LoadedPipeline
from deltaflow.ops._pipeline import load, new_run_id
from deltaflow.quality import replay as rp
from deltaflow.quality.replay import Quarantine


@dataclass(frozen=True)
class ReasonSummary:
    """One reason code's records in one step's quarantine table."""

    step_id: str
    table: str
    reason_code: str
    records: int
    oldest: str
    newest: str


@dataclass(frozen=True)
class QuarantinedRecord:
    """One record kept out of a load: when, why, and the record as JSON."""

    step_id: str
    quarantined_at: str
    reason_code: str
    reason: str
    record: str


@dataclass(frozen=True)
class ReplayOutcome:
    """One step's replay: records replayed, then loaded or quarantined again."""

    step_id: str
    replayed: int
    loaded: int
    quarantined: int


@dataclass(frozen=True)
class PurgeOutcome:
    """One step's purge: how many records were deleted."""

    step_id: str
    deleted: int


@contextmanager
def _opened(
    pipeline: str, configs: Path | None, steps: Sequence[str]
) -> Iterator[tuple[LoadedPipeline, list[Quarantine]]]:
    """The pipeline and its quarantine tables; their connections close on exit."""
    loaded = load(pipeline, configs)
    found = rp.quarantines(loaded, list(steps), new_run_id())
    with ExitStack() as stack:
        for resources in {id(q.resources): q.resources for q in found}.values():
            stack.enter_context(closing(resources))
        yield loaded, found


def summaries(
    pipeline: str, steps: Sequence[str] = (), configs: Path | None = None
) -> list[ReasonSummary]:
    """Records per step and reason code: how many, the oldest and the newest."""
    with _opened(pipeline, configs, steps) as (_, found):
        return [
            ReasonSummary(
                q.step.step_id,
                q.table + held.SUFFIX,
                row["reason_code"],
                row["records"],
                row["oldest"],
                row["newest"],
            )
            for q in found
            for row in rp.summary(q)
        ]


def records(
    pipeline: str, steps: Sequence[str] = (), limit: int = 20, configs: Path | None = None
) -> Generator[QuarantinedRecord, None, None]:
    """The records themselves, oldest first, at most ``limit`` per step."""
    with _opened(pipeline, configs, steps) as (_, found):
        for q in found:
            for row in rp.records(q, limit):
                yield QuarantinedRecord(
                    q.step.step_id,
                    str(row["quarantined_at"]),
                    str(row["reason_code"]),
                    str(row["reason"]),
                    str(row["record"]),
                )


def replay(
    pipeline: str, steps: Sequence[str] = (), configs: Path | None = None
) -> Generator[ReplayOutcome, None, None]:
    """Load each step's records through the step as configured now; those that load
    leave the quarantine, the rest stay."""
    with _opened(pipeline, configs, steps) as (loaded, found):
        for q in found:
            done = rp.replay(q, loaded)
            yield ReplayOutcome(
                q.step.step_id, done["replayed"], done["loaded"], done["quarantined"]
            )


def purge(
    pipeline: str, steps: Sequence[str] = (), configs: Path | None = None
) -> Generator[PurgeOutcome, None, None]:
    """Delete each step's quarantined records for good."""
    with _opened(pipeline, configs, steps) as (_, found):
        for q in found:
            yield PurgeOutcome(q.step.step_id, rp.purge(q))
