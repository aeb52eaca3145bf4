"""The crash harness of ``reliability/``, in small: randomized trials in which the sync is
killed at named crash points and at random moments while the source changes under it
(ties, updates, late commits inside lookback), into DuckDB and PostgreSQL. Afterwards the
destination must hold every source row exactly once, with the same values."""

from __future__ import annotations

from pathlib import Path

from reliability.harness import TrialConfig, run_trials

from deltaflow.faults import POINTS

SEED = 20240301
TRIALS = 15


def test_kills_during_incremental_sync_lose_and_repeat_nothing(tmp_path: Path, pg_dsn: str) -> None:
    config = TrialConfig(runs=2, crash_share=0.4, kill_share=0.4)
    report = run_trials(pg_dsn, tmp_path, TRIALS, SEED, config)

    failures = [t.line() + "".join(f"\n  {e}" for e in t.examples) for t in report.trials]
    assert report.errors == [], "\n".join(failures)
    assert (report.lost, report.duplicated) == (0, 0), "\n".join(failures)
    assert report.rows_compared >= TRIALS * config.initial_rows
    assert {t.destination for t in report.trials} == {"duckdb", "postgres"}
    # The kills happened: at every named point, and at random moments.
    assert set(report.kills_by_point) == set(POINTS), report.kills_by_point
    assert report.random_kills > 0
    # The writer made ties, updates and late commits while the sync ran.
    for kind in ("inserts", "updates", "tied_updates", "late_commits"):
        assert all(t.writer.get(kind, 0) > 0 for t in report.trials), kind
