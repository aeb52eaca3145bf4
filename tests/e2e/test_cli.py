"""The CLI end to end: real subprocesses, real files, a real DuckDB warehouse."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SECRET = "s3cr3t-Planted-Value-8472"
FILE_SECRET = "another-Secret-From-File-5521"


def deltaflow(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deltaflow", *args]
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def write_shop(root: Path) -> None:
    (root / "data").mkdir()
    orders = pa.table(
        {
            "order_id": pa.array(range(1, 1001), pa.int64()),
            "customer_id": pa.array([i % 97 for i in range(1000)], pa.int64()),
            "total": pa.array([i * 1.5 for i in range(1000)]),
        }
    )
    pq.write_table(orders, root / "data" / "orders.parquet", row_group_size=250)
    (root / "data" / "customers.csv").write_text(
        "customer_id,name\n" + "".join(f"{i},name {i}\n" for i in range(97))
    )


PIPELINE = """\
pipeline_id: "{tenant_id}-shop"
connections:
  files: {type: files, base_path: data}
  warehouse: {type: duckdb, path: warehouse.duckdb}
steps:
  - step_id: orders
    type: sync
    source: {connection: files, path: orders.parquet}
    destination: {connection: warehouse, table: raw.orders, write_mode: merge,
                  primary_key: [order_id]}
  - step_id: customers
    type: sync
    source: {connection: files, path: customers.csv}
    destination: {connection: warehouse, table: raw.customers, write_mode: replace}
"""


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    write_shop(tmp_path)
    (tmp_path / "shop.yml").write_text(PIPELINE)
    return tmp_path


def table_count(db: Path, table: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def run_ids(root: Path) -> list[str]:
    with sqlite3.connect(root / ".deltaflow" / "runs.db") as con:
        return [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started_at")]


def test_run_loads_every_step_and_prints_a_clean_summary(shop: Path) -> None:
    result = deltaflow("run", "shop.yml", "--tenant", "acme", cwd=shop)

    assert result.returncode == 0, result.stderr
    assert "acme-shop: succeeded" in result.stdout
    assert "\x1b[" not in result.stdout + result.stderr  # piped output has no colour codes
    assert table_count(shop / "warehouse.duckdb", "raw.orders") == 1000
    assert table_count(shop / "warehouse.duckdb", "raw.customers") == 97


def test_second_merge_run_updates_instead_of_duplicating(shop: Path) -> None:
    assert deltaflow("run", "shop.yml", "-q", cwd=shop).returncode == 0
    second = deltaflow("run", "shop.yml", cwd=shop)

    assert second.returncode == 0, second.stderr
    assert table_count(shop / "warehouse.duckdb", "raw.orders") == 1000
    show = deltaflow("runs", "show", run_ids(shop)[-1], cwd=shop)
    assert "orders" in show.stdout
    assert "succeeded" in show.stdout


def test_silent_prints_nothing_on_success(shop: Path) -> None:
    result = deltaflow("run", "shop.yml", "--silent", cwd=shop)

    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == ""


def test_quiet_drops_the_progress_but_prints_the_summary(shop: Path) -> None:
    result = deltaflow("run", "shop.yml", "--quiet", cwd=shop)

    assert result.returncode == 0
    assert "orders" in result.stdout  # the summary table names each step
    assert "1,000" in result.stdout  # and its rows
    assert result.stderr == ""  # no progress bars


def test_silent_still_reports_a_failure(shop: Path) -> None:
    (shop / "data" / "orders.parquet").unlink()
    result = deltaflow("run", "shop.yml", "--silent", cwd=shop)

    assert result.returncode == 1
    assert "orders" in result.stderr + result.stdout


def test_run_by_id_finds_the_file_under_configs(shop: Path) -> None:
    configs = shop / "configs" / "sales"
    configs.mkdir(parents=True)
    (configs / "shop.yml").write_text(
        PIPELINE.replace("base_path: data", f"base_path: {shop / 'data'}")
    )

    result = deltaflow("run", "shop", "-q", cwd=shop)

    assert result.returncode == 0, result.stderr
    # relative paths resolve against the pipeline file: the warehouse lands beside it
    assert table_count(configs / "warehouse.duckdb", "raw.orders") == 1000


def test_failing_step_exits_nonzero_and_is_recorded_as_failed(shop: Path) -> None:
    (shop / "shop.yml").write_text(PIPELINE.replace("orders.parquet", "missing/*.parquet"))

    result = deltaflow("run", "shop.yml", cwd=shop)

    assert result.returncode == 1
    assert "SOURCE_ERROR" in result.stderr
    assert "missing/*.parquet" in result.stderr
    (run_id,) = run_ids(shop)
    show = deltaflow("runs", "show", run_id, cwd=shop)
    assert show.returncode == 0
    assert "failed" in show.stdout
    assert "[SOURCE_ERROR] no files match 'missing/*.parquet'" in show.stdout
    assert "skipped" in show.stdout  # the step after the failure did not run
    listing = deltaflow("runs", cwd=shop)
    assert run_id in listing.stdout
    assert "SOURCE_ERROR" in listing.stdout


def test_error_messages_keep_brackets(shop: Path) -> None:
    (shop / "shop.yml").write_text(PIPELINE.replace("orders.parquet", "'[xy]/*.parquet'"))

    result = deltaflow("run", "shop.yml", cwd=shop)

    assert result.returncode == 1
    assert "no files match '[xy]/*.parquet'" in result.stderr


def test_planted_secrets_never_reach_output_logs_or_the_run_store(shop: Path) -> None:
    secrets_dir = shop / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "token").write_text(FILE_SECRET + "\n")
    (shop / "shop.yml").write_text(
        PIPELINE.replace(
            "path: orders.parquet", "path: '${env:SHOP_TOKEN}/${file:secrets/token}/*.parquet'"
        )
    )

    result = deltaflow("run", "shop.yml", "--verbose", cwd=shop, env={"SHOP_TOKEN": SECRET})
    show = deltaflow("runs", "show", run_ids(shop)[0], cwd=shop)
    listing = deltaflow("runs", cwd=shop)

    assert result.returncode == 1  # the secret made the path wrong: the error quotes it
    assert "***" in result.stderr
    stored = (shop / ".deltaflow" / "runs.db").read_bytes()
    for text in (
        result.stdout,
        result.stderr,
        show.stdout,
        listing.stdout,
        stored.decode("utf-8", "replace"),
    ):
        assert SECRET not in text
        assert FILE_SECRET not in text


def test_unknown_pipeline_id_suggests_the_closest(shop: Path) -> None:
    result = deltaflow("run", "shpo", cwd=shop)

    assert result.returncode == 1
    assert "CONFIG_PIPELINE_NOT_FOUND" in result.stderr
    assert "Did you mean 'shop'?" in result.stderr


def test_invalid_pipeline_is_not_run(shop: Path) -> None:
    (shop / "shop.yml").write_text(PIPELINE.replace("write_mode: replace", "write_mode: upsert"))

    result = deltaflow("run", "shop.yml", cwd=shop)

    assert result.returncode == 1
    assert "shop.yml:14: steps[1].destination.write_mode: invalid value 'upsert'" in result.stderr
    assert not (shop / "warehouse.duckdb").exists()


def test_var_overrides_pipeline_variables(shop: Path) -> None:
    (shop / "shop.yml").write_text(
        textwrap.dedent("""\
        pipeline_id: vars
        variables: {table: raw.wrong}
        connections:
          files: {type: files, base_path: data}
          warehouse: {type: duckdb, path: warehouse.duckdb}
        steps:
          - step_id: orders
            type: sync
            source: {connection: files, path: orders.parquet}
            destination: {connection: warehouse, table: "{table}"}
        """)
    )

    result = deltaflow("run", "shop.yml", "--var", "table=raw.right", "-q", cwd=shop)

    assert result.returncode == 0, result.stderr
    assert table_count(shop / "warehouse.duckdb", "raw.right") == 1000


def test_schema_prints_the_json_schema_of_the_pipeline_format(tmp_path: Path) -> None:
    result = deltaflow("schema", cwd=tmp_path)

    document = json.loads(result.stdout)
    assert document["title"] == "DeltaFlow pipeline"
    assert {"pipeline_id", "steps", "connections", "variables"} <= set(document["properties"])
    assert "SyncStep" in document["$defs"]


def test_help_explains_the_commands(tmp_path: Path) -> None:
    result = deltaflow("run", "--help", cwd=tmp_path)

    assert result.returncode == 0
    for option in ("--var", "--configs", "--step", "--quiet", "--metadata"):
        assert option in result.stdout


def test_test_and_limit_read_a_sample_of_every_source(shop: Path) -> None:
    trial = deltaflow("run", "shop.yml", "--test", "--quiet", cwd=shop)

    assert trial.returncode == 0, trial.stderr
    # orders.parquet has 4 row groups read in parallel: still exactly 100 rows in all
    assert table_count(shop / "warehouse.duckdb", "raw.orders") == 100
    assert table_count(shop / "warehouse.duckdb", "raw.customers") == 97  # fewer than 100

    limited = deltaflow("run", "shop.yml", "--limit", "7", "--step", "customers", cwd=shop)
    assert limited.returncode == 0, limited.stderr
    assert table_count(shop / "warehouse.duckdb", "raw.customers") == 7

    refused = deltaflow("run", "shop.yml", "--limit", "0", cwd=shop)
    assert refused.returncode == 2
    assert "--limit" in refused.stderr
