"""Run options: the run-time overrides a command line or an API request gives a run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncOptions:
    """Run-time overrides of a step's incremental settings (CLI flags)."""

    full_refresh: bool = False
    """Ignore the state: read everything, replace the table, start a new watermark."""
    start: str | None = None
    """Backfill from this cursor value (inclusive)."""
    end: str | None = None
    """Read up to this cursor value (exclusive)."""
    cursor: str | None = None
    """Use this cursor column instead of the configured one."""
    limit: int | None = None
    """Read at most this many rows per source (``--limit``, ``--test``)."""
