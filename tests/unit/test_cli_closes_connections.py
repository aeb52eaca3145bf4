"""Every command closes the connections it opens, when it fails too.

A command that leaves a connection open holds a DuckDB file (or a PostgreSQL session)
for as long as its process lives: harmless for a one-shot CLI, a leak in a server that
runs the same use cases. These run the commands in-process against a real DuckDB file
and keep every ``RunResources`` made, so an unclosed handle is still there to see.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from deltaflow.cli import app
from deltaflow.connectors.protocol import RunResources

ROWS = 50
BAD = {7, 21}  # amounts below zero: quarantined


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[RunResources]:
    """Every RunResources made while the test runs."""
    made: list[RunResources] = []
    original = RunResources.__init__

    def tracking(self: RunResources, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(RunResources, "__init__", tracking)
    return made


def still_open(made: list[RunResources]) -> list[RunResources]:
    return [r for r in made if r.closers or r.handles]


def deltaflow(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def quarantined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DuckDB table loaded from Parquet with two rows in its quarantine."""
    monkeypatch.chdir(tmp_path)
    amounts = [-1.0 if i in BAD else i * 2.5 for i in range(ROWS)]
    pq.write_table(
        pa.table({"id": pa.array(range(ROWS), pa.int64()), "amount": amounts}),
        tmp_path / "orders.parquet",
    )
    (tmp_path / "pipeline.yml").write_text(
        textwrap.dedent("""\
        pipeline_id: shop
        connections:
          files: {type: files}
          wh: {type: duckdb, path: wh.duckdb}
        steps:
          - step_id: load
            type: sync
            source: {connection: files, path: orders.parquet}
            destination: {connection: wh, table: orders, write_mode: merge, primary_key: [id]}
            checks:
              - {check: between, column: amount, min: 0, action: quarantine}
        """)
    )
    loaded = deltaflow("run", "pipeline.yml", "-q", "--metadata", "runs.db")
    assert loaded.exit_code == 0, loaded.output
    return tmp_path


def quarantine_rows(root: Path) -> int:
    with duckdb.connect(str(root / "wh.duckdb")) as con:
        row = con.sql("SELECT count(*) FROM orders__quarantine").fetchone()
    assert row is not None
    return int(row[0])


def test_quarantine_list_closes_its_connections(
    quarantined: Path, opened: list[RunResources]
) -> None:
    result = deltaflow("quarantine", "list", "pipeline.yml")
    assert result.exit_code == 0, result.output
    assert "QUALITY_CHECK" in result.output
    assert opened
    assert still_open(opened) == []


def test_quarantine_show_closes_its_connections(
    quarantined: Path, opened: list[RunResources]
) -> None:
    result = deltaflow("quarantine", "show", "pipeline.yml", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert result.output.count("[QUALITY_CHECK]") == 1
    assert opened
    assert still_open(opened) == []


def test_quarantine_purge_closes_its_connections(
    quarantined: Path, opened: list[RunResources]
) -> None:
    result = deltaflow("quarantine", "purge", "pipeline.yml", "--yes")
    assert result.exit_code == 0, result.output
    assert "load: deleted 2 records" in result.output
    assert opened
    assert still_open(opened) == []
    assert quarantine_rows(quarantined) == 0


def test_a_failing_replay_closes_its_connections(
    quarantined: Path, opened: list[RunResources]
) -> None:
    with duckdb.connect(str(quarantined / "wh.duckdb")) as con:
        con.execute("DROP TABLE orders")  # the replay cannot read the table's schema
    result = deltaflow("quarantine", "replay", "pipeline.yml")
    assert result.exit_code == 1, result.output
    assert "does not exist" in str(result.exception)  # the driver's error, as before
    assert opened
    assert still_open(opened) == []
    assert quarantine_rows(quarantined) == len(BAD)


def test_a_replay_with_nothing_to_replay_closes_its_connections(
    quarantined: Path, opened: list[RunResources]
) -> None:
    assert deltaflow("quarantine", "purge", "pipeline.yml", "--yes").exit_code == 0
    result = deltaflow("quarantine", "replay", "pipeline.yml")
    assert result.exit_code == 0, result.output
    assert "load: replayed 0, loaded 0, still quarantined 0" in result.output
    assert still_open(opened) == []


def test_a_failing_reconcile_closes_its_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[RunResources]
) -> None:
    monkeypatch.chdir(tmp_path)
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        con.execute("CREATE TABLE src_orders AS SELECT range AS id FROM range(10)")
    (tmp_path / "pipeline.yml").write_text(
        textwrap.dedent("""\
        pipeline_id: rec
        connections:
          wh: {type: duckdb, path: wh.duckdb}
        steps:
          - step_id: orders
            type: sync
            source: {connection: wh, table: src_orders}
            destination: {connection: wh, table: dst_orders, primary_key: [id]}
        """)
    )
    result = deltaflow("reconcile", "pipeline.yml", "--step", "orders")  # dst_orders: none yet
    assert result.exit_code == 1, result.output
    assert "does not exist" in str(result.exception)  # the driver's error, as before
    assert opened
    assert still_open(opened) == []
