"""Incremental sync from the command line: the plan line, state show/set/reset, refresh.

DuckDB on both sides, so this also covers the DuckDB source's window predicate and its
{start_timestamp}/{end_timestamp} parameters.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

PIPELINE = """\
pipeline_id: shop
connections:
  src: {{type: duckdb, path: src.duckdb}}
  wh: {{type: duckdb, path: wh.duckdb}}
steps:
  - step_id: events
    type: sync
    source: {source}
    destination: {{connection: wh, table: raw.events, write_mode: append}}
    incremental: {{cursor: ts, timezone: Asia/Tokyo}}
"""
TABLE = "{connection: src, table: events}"
QUERY = (
    '{connection: src, stream: events, query: "SELECT * FROM events '
    'WHERE ts >= {start_timestamp}::TIMESTAMPTZ AND ts < {end_timestamp}::TIMESTAMPTZ"}'
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "deltaflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out


def source(cwd: Path, statement: str) -> None:
    with duckdb.connect(str(cwd / "src.duckdb")) as con:
        con.execute(statement)


def destination_ids(cwd: Path) -> list[int]:
    with duckdb.connect(str(cwd / "wh.duckdb")) as con:
        return [r[0] for r in con.sql("SELECT id FROM raw.events ORDER BY id").fetchall()]


@pytest.mark.parametrize("kind", ["table", "query"])
def test_incremental_runs_and_state_commands(tmp_path: Path, kind: str) -> None:
    (tmp_path / "shop.yml").write_text(PIPELINE.format(source=TABLE if kind == "table" else QUERY))
    # A naive cursor, in Tokyo time (UTC+9).
    source(
        tmp_path,
        "CREATE TABLE events AS SELECT range AS id, "
        "TIMESTAMP '2024-01-01 09:00:00' + range * INTERVAL 1 MINUTE AS ts FROM range(5)",
    )
    first = cli("run", "shop.yml", cwd=tmp_path)
    assert "events/events: full on ts [beginning," in first.stdout
    assert "watermark 2024-01-01T00:04:00.000000+00:00" in first.stdout

    shown = cli("state", "show", "shop.yml", cwd=tmp_path)
    assert "2024-01-01T00:04:00.000000+00:00" in shown.stdout

    source(
        tmp_path,
        "INSERT INTO events VALUES (5, TIMESTAMP '2024-01-01 09:04:00'), "
        "(6, TIMESTAMP '2024-01-01 09:10:00')",
    )
    second = cli("run", "shop.yml", cwd=tmp_path)
    assert "incremental on ts [2024-01-01T00:04:00.000000+00:00," in second.stdout
    assert destination_ids(tmp_path) == list(range(7))

    # Back to the start of the day: a re-read, which append would duplicate...
    cli("state", "set", "shop.yml", "events", "--value", "2024-01-01T09:00:00", cwd=tmp_path)
    assert (
        "2024-01-01T00:00:00.000000+00:00" in cli("state", "show", "shop.yml", cwd=tmp_path).stdout
    )
    cli("run", "shop.yml", cwd=tmp_path)
    assert len(destination_ids(tmp_path)) == 7 + 7
    # ...which a full refresh repairs, with a new watermark committed with it.
    refreshed = cli("run", "shop.yml", "--full-refresh", cwd=tmp_path)
    assert "full_refresh" in refreshed.stdout
    assert destination_ids(tmp_path) == list(range(7))

    assert "removed 1 state record(s)" in cli("state", "reset", "shop.yml", cwd=tmp_path).stdout
    adopted = cli("run", "shop.yml", cwd=tmp_path)
    assert "adopted on ts [2024-01-01T00:10:00.000000+00:00," in adopted.stdout
    assert destination_ids(tmp_path) == list(range(7))


def test_state_commands_explain_a_pipeline_without_incremental_steps(tmp_path: Path) -> None:
    (tmp_path / "shop.yml").write_text(
        textwrap.dedent(PIPELINE.format(source=TABLE)).split("    incremental:")[0]
    )
    out = subprocess.run(
        [sys.executable, "-m", "deltaflow", "state", "show", "shop.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "pipeline shop has no incremental step" in out.stderr
