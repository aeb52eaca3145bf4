"""Compare a sync step's source and destination tables and record the result."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from deltaflow.errors import ConfigError
from deltaflow.ops._pipeline import load, new_run_id
from deltaflow.quality import reconcile as rc
from deltaflow.quality.reconcile import Reconciliation


@dataclass(frozen=True)
class ReconcileRequest:
    """Which step's tables to compare, by which key, and where the record goes."""

    pipeline: str
    step: str
    keys: Sequence[str] = ()
    """Key columns (default: the step's primary_key)."""
    buckets: int = 1024
    """Hashed key ranges compared first."""
    partition_column: str | None = None
    """Date column whose latest value goes into the record."""
    recon_table: str = rc.RECON_TABLE
    run_date: dt.date | None = None
    """Scheduled date (default: today, UTC)."""
    configs: Path | None = None


@dataclass(frozen=True)
class ReconcileOutcome:
    """What was compared, what differs, and where the record was appended."""

    source_table: str
    target_table: str
    verdict: str
    """The record's pass flag: ``Passed`` or ``Failed``."""
    result: Reconciliation
    written: str
    """The table the record was appended to."""

    @property
    def passed(self) -> bool:
        return self.result.passed


def reconcile(request: ReconcileRequest) -> ReconcileOutcome:
    """Compare by count and hashed key ranges, name the keys that differ, append the
    record to ``recon_table`` in the destination's warehouse."""
    loaded = load(request.pipeline, request.configs)
    sync, source, target = rc.sides(loaded, request.step, new_run_id())
    with closing(source.resources):
        keys = list(request.keys or sync.destination.primary_key)
        if not keys:
            raise ConfigError(
                f"step '{request.step}' has no primary_key to compare rows by",
                hint="pass --key COLUMN (repeatable)",
            )
        compared = [c for c in source.columns() if c in set(target.columns())]
        result = rc.reconcile(source, target, keys, compared, request.buckets)
        day = request.run_date or dt.datetime.now(dt.UTC).date()
        row = rc.record(result, loaded, sync, source, target, day, request.partition_column)
        written = rc.write_record(target, row, request.recon_table)
    verdict = str(row["rcncln_exact_pass_in"])
    return ReconcileOutcome(source.table, target.table, verdict, result, written)
