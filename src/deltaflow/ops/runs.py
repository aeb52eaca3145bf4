"""The run store: recent runs, and one run with its steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deltaflow.errors import RunNotFoundError
from deltaflow.metadata.store import RunRecord, StepRecord
from deltaflow.ops._pipeline import open_store


@dataclass(frozen=True)
class RunDetail:
    """One run and its steps."""

    run: RunRecord
    steps: list[StepRecord]


def list_runs(
    metadata: Path | None = None, limit: int = 20, pipeline_id: str | None = None
) -> list[RunRecord]:
    """The most recent runs, newest first (of ``pipeline_id`` only, when given)."""
    return open_store(metadata).runs(limit, pipeline_id)


def show_run(run_id: str, metadata: Path | None = None) -> RunDetail:
    """The run with this id (a unique prefix is enough) and its steps."""
    store = open_store(metadata)
    record = store.run(run_id)
    if record is None:
        raise RunNotFoundError(
            f"no run '{run_id}' in {store.path} (or the prefix is ambiguous)",
            hint="'deltaflow runs' lists recent runs",
        )
    return RunDetail(record, store.steps(record.run_id))
