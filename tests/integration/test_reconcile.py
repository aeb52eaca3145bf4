"""deltaflow reconcile: count and hashed key ranges, then the differing keys, between a
sync step's source and destination (DuckDB and PostgreSQL, and across the two)."""

from __future__ import annotations

import datetime as dt
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
from tests.support.cli import run_cli

PAIRS = [("duckdb", "duckdb"), ("pg", "pg"), ("pg", "duckdb")]


def sql(where: str, tmp_path: Path, dsn: str, statement: str) -> list[tuple[Any, ...]]:
    if where == "duckdb":
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
            return con.execute(statement).fetchall()
    with psycopg.connect(dsn, autocommit=True) as con:
        cursor = con.execute(statement)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_reconcile_names_the_keys_that_differ_and_records_the_result(
    tmp_path: Path, pg_dsn: str, src: str, dst: str
) -> None:
    when = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    sql(
        src,
        tmp_path,
        pg_dsn,
        "CREATE TABLE src_orders (id bigint PRIMARY KEY, v text, amount decimal(12,2), "
        "placed timestamptz, day date, ok boolean, score double precision)",
    )
    rows = ", ".join(
        f"({i}, 'v{i}', {i}.25, TIMESTAMPTZ '{when.isoformat()}' + INTERVAL '{i} minutes', "
        f"DATE '2024-01-01' + {i % 30}, {str(i % 2 == 0).lower()}, {i / 3})"
        for i in range(2000)
    )
    sql(src, tmp_path, pg_dsn, f"INSERT INTO src_orders VALUES {rows}")
    source_conn, dest_conn = (
        ("wh" if src == "duckdb" else "pg"),
        ("wh" if dst == "duckdb" else "pg"),
    )
    (tmp_path / "pipeline.yml").write_text(
        textwrap.dedent(f"""\
        pipeline_id: rec
        connections:
          wh: {{type: duckdb, path: wh.duckdb}}
          pg: {{type: postgres, dsn: "{pg_dsn}"}}
        steps:
          - step_id: orders
            type: sync
            source: {{connection: {source_conn}, table: src_orders}}
            destination: {{connection: {dest_conn}, table: dst_orders, write_mode: merge,
                          primary_key: [id]}}
        """)
    )
    loaded = load_pipeline(tmp_path / "pipeline.yml")
    assert run_pipeline(loaded, context=RunContext(), store=RunStore(tmp_path / "r.db")).ok

    def deltaflow(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(tmp_path, *args)

    same = deltaflow("reconcile", "pipeline.yml", "--step", "orders", "--run-date", "2024-05-02")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "Passed (2,000 rows in the source, 2,000 in the destination" in same.stdout

    sql(dst, tmp_path, pg_dsn, "UPDATE dst_orders SET amount = amount + 0.01 WHERE id = 1234")
    sql(dst, tmp_path, pg_dsn, "DELETE FROM dst_orders WHERE id = 77")
    sql(src, tmp_path, pg_dsn, "INSERT INTO src_orders (id, v) VALUES (5000, 'late')")
    differs = deltaflow(
        "reconcile", "pipeline.yml", "--step", "orders", "--partition-column", "day"
    )

    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert "Failed (2,001 rows in the source, 1,999 in the destination" in differs.stdout
    assert "missing in the destination (2): 5000, 77" in differs.stdout
    assert "changed (1): 1234" in differs.stdout
    records = sql(
        dst,
        tmp_path,
        pg_dsn,
        'SELECT rcncln_exact_pass_in, schdld_dt, schdld_yr, "Job_Name", source_row_cnt, '
        "target_row_cnt, latest_source_parttn_dt FROM _deltaflow_reconciliation "
        "ORDER BY load_ts",
    )
    assert [r[0] for r in records] == ["Passed", "Failed"]
    assert records[0][1] == dt.date(2024, 5, 2)
    assert records[0][2] == 2024
    assert records[1][3] == "rec/orders"
    assert records[1][4:6] == (2001, 1999)
    assert records[1][6] == "2024-01-30"


def test_a_text_key_is_compared_by_hashed_ranges(tmp_path: Path, pg_dsn: str) -> None:
    from deltaflow.config.connections import DuckDBConnection
    from deltaflow.connectors.protocol import RunResources
    from deltaflow.quality.reconcile import Side, reconcile

    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        con.execute(
            "CREATE TABLE a AS SELECT 'k' || g AS code, g AS n FROM generate_series(1, 5000) t(g)"
        )
        con.execute("CREATE TABLE b AS SELECT * FROM a")
        con.execute("UPDATE b SET n = -1 WHERE code = 'k4321'")
        con.execute("DELETE FROM b WHERE code = 'k17'")
    conn = DuckDBConnection.model_validate({"type": "duckdb", "path": str(tmp_path / "wh.duckdb")})
    resources = RunResources(tmp_path, "r")
    a, b = Side(conn, "a", resources), Side(conn, "b", resources)
    columns = a.columns()
    b.columns()

    result = reconcile(a, b, ["code"], columns, buckets=64)

    resources.close()
    assert (result.source_rows, result.target_rows, result.buckets) == (5000, 4999, 64)
    assert result.changed == ["k4321"]
    assert result.missing_in_target == ["k17"]
    assert not result.passed
