"""The metrics engine on DuckDB and PostgreSQL: the seed's two example metrics, an exact
sum, a failing metric, reruns, and the reconciliation records."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from tests.support.cli import run_cli

# The seed's examples (section 12), as written there: BigQuery SQL, placeholders.
COUNT = {
    "metric_id": "daily_transaction_count",
    "metric_name": "Daily Transaction Count",
    "metric_type": "count",
    "sql": "SELECT COUNT(*) as metric_output, COUNT(*) as numerator_value, 1 as "
    "denominator_value, '{currently}' as business_data_date FROM transactions WHERE date = "
    "{partition_info}",
    "dependency": "daily_batch",
    "target_table": "analytics.metrics.transaction_metrics",
}
RATIO = {
    "metric_id": "customer_conversion_rate",
    "metric_name": "Customer Conversion Rate",
    "metric_type": "ratio",
    "sql": "SELECT ROUND(SAFE_DIVIDE(converted_customers, total_visitors) * 100, 2) as "
    "metric_output, converted_customers as numerator_value, total_visitors as "
    "denominator_value, '{currently}' as business_data_date FROM (SELECT COUNT(DISTINCT CASE "
    "WHEN converted = true THEN customer_id END) as converted_customers, COUNT(DISTINCT "
    "customer_id) as total_visitors FROM customer_activity WHERE activity_date = "
    "{partition_info})",
    "dependency": "customer_analytics",
    "target_table": "analytics.metrics.conversion_metrics",
}
# Exactness: these amounts lose their last digits in float64.
AMOUNTS = ["12345678901234567.123456789", "0.000000001", "98765432109876543.2"]
EXACT = {
    "metric_id": "exact_amount",
    "metric_name": "Exact Amount",
    "metric_type": "sum",
    "sql": "SELECT SUM(amount) as metric_output, SUM(amount) as numerator_value, COUNT(*) as "
    "denominator_value, '{currently}' as business_data_date FROM transactions WHERE date = "
    "{partition_info}",
    "dependency": "daily_batch",
    "target_table": "analytics.metrics.transaction_metrics",
}
BROKEN = {
    "metric_id": "broken_metric",
    "metric_name": "Broken Metric",
    "metric_type": "count",
    "sql": "SELECT COUNT(*) as metric_output, 1 as numerator_value, 1 as denominator_value, "
    "'{currently}' as business_data_date FROM no_such_table",
    "dependency": "daily_batch",
    "target_table": "analytics.metrics.transaction_metrics",
}

FIXTURE = [
    "CREATE TABLE transactions (date DATE, amount DECIMAL(38,9), customer_id INTEGER)",
    "INSERT INTO transactions VALUES "
    + ", ".join(f"(DATE '2024-01-14', {a}, {i})" for i, a in enumerate(AMOUNTS))
    + ", (DATE '2024-01-13', 5, 9)",
    "CREATE TABLE customer_activity (activity_date DATE, customer_id INTEGER, converted BOOLEAN)",
    "INSERT INTO customer_activity VALUES (DATE '2024-01-14', 1, true), "
    "(DATE '2024-01-14', 2, false), (DATE '2024-01-14', 3, false), "
    "(DATE '2024-01-14', 3, false), (DATE '2024-01-13', 4, true)",
    "CREATE TABLE partition_info (table_name VARCHAR, partition_dt DATE)",
    "INSERT INTO partition_info VALUES ('transactions', DATE '2024-01-14'), "
    "('transactions', DATE '2024-01-13'), ('customer_activity', DATE '2024-01-14')",
]


class Warehouse:
    def __init__(self, kind: str, tmp_path: Path, dsn: str):
        self.kind, self.path, self.dsn = kind, tmp_path / "wh.duckdb", dsn

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        if self.kind == "duckdb":
            with duckdb.connect(str(self.path)) as con:
                return con.execute(statement).fetchall()
        with psycopg.connect(self.dsn, autocommit=True) as con:
            cursor = con.execute(statement)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    @property
    def profile(self) -> str:
        if self.kind == "duckdb":
            return f"DEV: {{type: duckdb, path: {self.path}}}\n"
        return f'DEV: {{type: postgres, dsn: "{self.dsn}"}}\n'


@pytest.fixture(params=["duckdb", "pg"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, pg_dsn: str) -> Warehouse:
    found = Warehouse(request.param, tmp_path, pg_dsn)
    for statement in FIXTURE:
        found.sql(statement)
    (tmp_path / "profiles.yml").write_text(found.profile)
    return found


def metrics(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path, "metrics", *args)


def test_the_seed_metrics_run_exactly_once_per_date_with_a_record_each(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps([COUNT, RATIO, EXACT, BROKEN]))
    args = [
        "run",
        "--config",
        "metrics.json",
        "--run-date",
        "2024-01-15",
        "--partition-info-table",
        "partition_info",
        "--recon-table",
        "metrics_recon",
    ]

    first = metrics(tmp_path, *args)
    again = metrics(tmp_path, *args)

    assert first.returncode == 1, first.stdout + first.stderr  # the broken metric fails
    assert "SQL_EXECUTION_ERROR" in first.stdout
    counts = warehouse.sql(
        "SELECT metric_id, metric_output, numerator_value, denominator_value, "
        "business_data_date, partition_dt FROM metrics.transaction_metrics ORDER BY metric_id"
    )
    exact_sum = sum(Decimal(a) for a in AMOUNTS)
    assert counts == [
        (
            "daily_transaction_count",
            Decimal(3),
            Decimal(3),
            Decimal(1),
            dt.date(2024, 1, 15),
            dt.date(2024, 1, 15),
        ),
        (
            "exact_amount",
            exact_sum,
            exact_sum,
            Decimal(3),
            dt.date(2024, 1, 15),
            dt.date(2024, 1, 15),
        ),
    ]  # two runs, one row per metric and date
    assert Decimal(float(exact_sum)) != exact_sum  # float64 would have lost digits
    assert str(exact_sum) == "111111111011111110.323456790"
    ratio = warehouse.sql(
        "SELECT metric_output, numerator_value, denominator_value FROM metrics.conversion_metrics"
    )
    assert ratio == [(Decimal("33.330000000"), Decimal(1), Decimal(3))]  # 1 of 3 converted
    recon = warehouse.sql(
        'SELECT source_system_id, rcncln_exact_pass_in, error_category, "Job_Name", '
        "latest_source_parttn_dt, schdld_dt, schdld_yr, module_id FROM metrics_recon "
        "ORDER BY load_ts, source_system_id"
    )
    assert len(recon) == 8  # every metric, both runs
    last = {r[0]: r for r in recon[4:]}
    assert last["broken_metric"][1:3] == ("Failed", "SQL_EXECUTION_ERROR")
    assert last["daily_transaction_count"][1:5] == (
        "Passed",
        None,
        "Daily Transaction Count",
        "2024-01-14",
    )
    assert last["exact_amount"][5:] == (dt.date(2024, 1, 15), 2024, "103")
    assert again.returncode == 1


def test_a_missing_partition_and_a_missing_partition_table(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    warehouse.sql("DELETE FROM partition_info WHERE table_name = 'customer_activity'")
    (tmp_path / "metrics.json").write_text(json.dumps([COUNT, RATIO]))
    base = ["run", "--config", "metrics.json", "--run-date", "2024-01-15"]

    partial = metrics(tmp_path, *base, "--partition-info-table", "partition_info")
    assert partial.returncode == 1
    recon = dict(warehouse.sql("SELECT source_system_id, error_category FROM metrics_recon"))
    assert recon == {
        "daily_transaction_count": None,
        "customer_conversion_rate": "PARTITION_VALIDATION_ERROR",
    }

    missing = metrics(tmp_path, *base, "--partition-info-table", "nope")
    assert missing.returncode == 1
    failed = warehouse.sql(
        "SELECT source_system_id, error_category FROM metrics_recon "
        "WHERE rcncln_exact_pass_in = 'Failed' ORDER BY source_system_id"
    )
    # the whole run failed before any metric ran: a failure record for every metric
    assert ("daily_transaction_count", "PARTITION_VALIDATION_ERROR") in failed
    assert len([f for f in failed if f[0] == "customer_conversion_rate"]) == 2


def test_validate_reports_every_mistake_in_one_pass(tmp_path: Path) -> None:
    bad = [
        {**COUNT, "metric_id": "bad id!", "target_table": "no_dataset"},
        {**RATIO, "metric_type": "median", "sql": "SELECT {yesterday} FROM t"},
        {**COUNT, "metric_name": ""},
        {**RATIO, "extra": 1, "dependency": 5},
        COUNT,
    ]
    (tmp_path / "bad.json").write_text(json.dumps(bad))

    result = metrics(tmp_path, "validate", "--config", "bad.json")

    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("bad.json: ")]
    assert "bad.json: bad id!: metric_id: use letters, digits and underscores" in lines
    assert any("bad id!: target_table: 'no_dataset' is not" in line for line in lines)
    assert any(
        "customer_conversion_rate: metric_type: 'median' is not one of" in line for line in lines
    )
    assert any("unknown placeholder {yesterday}" in line for line in lines)
    assert any("must return metric_output" in line for line in lines)
    assert (
        "bad.json: daily_transaction_count: metric_name: is required and empty or missing" in lines
    )
    assert any("extra: is not a metric field" in line for line in lines)
    assert any("dependency: must be text, not int" in line for line in lines)
    assert any(
        "daily_transaction_count: metric_id: duplicate of metric #3" in line for line in lines
    )
    assert "problem(s) in bad.json" in result.stderr
    good = tmp_path / "good.json"
    good.write_text(json.dumps([COUNT, RATIO]))
    assert "2 metrics, valid" in metrics(tmp_path, "validate", "--config", "good.json").stdout


def test_the_seed_metrics_on_bigquery_with_definitions_read_from_gcs(
    tmp_path: Path, bigquery_emulator: Any, bq_dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.gcs import running_gcs

    client = bigquery_emulator.client()
    for statement in FIXTURE:
        statement = statement.replace("DECIMAL(38,9)", "NUMERIC").replace("VARCHAR", "STRING")
        statement = statement.replace("INTEGER", "INT64").replace("BOOLEAN", "BOOL")
        for name in ("transactions", "customer_activity", "partition_info"):
            statement = statement.replace(f"TABLE {name}", f"TABLE `{bq_dataset}.{name}`")
            statement = statement.replace(f"INTO {name}", f"INTO `{bq_dataset}.{name}`")
        client.query(statement).result(timeout=60)
    target = f"{bigquery_emulator.project}.{bq_dataset}"
    definitions = [
        {**COUNT, "target_table": f"{target}.transaction_metrics"},
        {**RATIO, "target_table": f"{target}.conversion_metrics"},
    ]
    (tmp_path / "profiles.yml").write_text(
        f"PRD: {{type: bigquery, project: {bigquery_emulator.project}, dataset: {bq_dataset}, "
        f'api_endpoint: "{bigquery_emulator.endpoint}", timeout: 60}}\n'
    )
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    with running_gcs():  # sets STORAGE_EMULATOR_HOST for this process and the CLI's
        import gcsfs

        gcs = gcsfs.GCSFileSystem(token="anon")
        gcs.mkdir("metric-configs")
        with gcs.open("metric-configs/prd/metrics.json", "w") as handle:
            handle.write(json.dumps(definitions))
        done = again = metrics(
            tmp_path,
            "run",
            "--config",
            "gs://metric-configs/prd/metrics.json",
            "--env",
            "PRD",
            "--run-date",
            "2024-01-15",
            "--partition-info-table",
            f"{bq_dataset}.partition_info",
            "--recon-table",
            f"{bq_dataset}.metrics_recon",
        )
        again = metrics(tmp_path, *done.args[4:])  # the same run once more

    assert done.returncode == 0, done.stdout + done.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    rows = client.query(
        f"SELECT metric_id, metric_output FROM `{target}.transaction_metrics` UNION ALL "
        f"SELECT metric_id, metric_output FROM `{target}.conversion_metrics` ORDER BY metric_id"
    ).result(timeout=60)
    assert [tuple(r) for r in rows] == [
        ("customer_conversion_rate", Decimal("33.33")),
        ("daily_transaction_count", Decimal(3)),
    ]
    recon = client.query(
        f"SELECT source_system_id, rcncln_exact_pass_in, source_server_nm "
        f"FROM `{target}.metrics_recon` ORDER BY source_system_id"
    ).result(timeout=60)
    assert [tuple(r) for r in recon] == [  # a record per metric and run
        ("customer_conversion_rate", "Passed", "PRD bigquery"),
        ("customer_conversion_rate", "Passed", "PRD bigquery"),
        ("daily_transaction_count", "Passed", "PRD bigquery"),
        ("daily_transaction_count", "Passed", "PRD bigquery"),
    ]


def test_metrics_run_as_a_pipeline_step(tmp_path: Path, pg_dsn: str) -> None:
    from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline

    house = Warehouse("duckdb", tmp_path, pg_dsn)
    for statement in FIXTURE:
        house.sql(statement)
    (tmp_path / "metrics.json").write_text(json.dumps([COUNT, RATIO, EXACT, BROKEN]))
    (tmp_path / "pipeline.yml").write_text(
        "pipeline_id: kpis\n"
        "connections:\n"
        "  wh: {type: duckdb, path: wh.duckdb}\n"
        "steps:\n"
        "  - step_id: daily\n"
        "    type: metrics\n"
        "    connection: wh\n"
        "    config: metrics.json\n"
        "    dependencies: [daily_batch]\n"
        "    run_date: '{date}'\n"
        "    partition_info_table: partition_info\n"
    )

    result = run_pipeline(
        load_pipeline(tmp_path / "pipeline.yml"),
        context=RunContext(run_date=dt.date(2024, 1, 15)),
        store=RunStore(tmp_path / "runs.db"),
    )

    assert not result.ok  # the broken metric of daily_batch fails the step ...
    assert result.steps[0].error_code == "PIPELINE_EXECUTION_ERROR"
    outcomes = {m["metric_id"]: m for m in result.steps[0].details["metrics"]}
    assert set(outcomes) == {"daily_transaction_count", "exact_amount", "broken_metric"}
    assert outcomes["daily_transaction_count"]["metric_output"] == "3.000000000"
    assert outcomes["broken_metric"]["error_category"] == "SQL_EXECUTION_ERROR"
    # ... after the others were written
    assert house.sql("SELECT count(*) FROM metrics.transaction_metrics") == [(2,)]


def test_a_metric_past_its_timeout_is_stopped_and_recorded(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    if warehouse.kind == "duckdb":
        dialect, slow = "duckdb", "FROM range(3000000000) AS t(x) WHERE x % 7 = 3"
    else:
        dialect, slow = "postgres", "FROM (SELECT pg_sleep(5)) AS s"
    sleepy = {
        **COUNT,
        "metric_id": "sleepy",
        "sql": "SELECT count(*) AS metric_output, 1 AS numerator_value, 1 AS "
        f"denominator_value, '{{currently}}' AS business_data_date {slow}",
    }
    quick = {**sleepy, "metric_id": "quick", "sql": sleepy["sql"].split(" FROM ")[0]}
    (tmp_path / "metrics.json").write_text(json.dumps([sleepy, quick]))

    started = dt.datetime.now()
    done = metrics(
        tmp_path,
        "run",
        "--config",
        "metrics.json",
        "--run-date",
        "2024-01-15",
        "--dialect",
        dialect,
        "--timeout",
        "1",
    )

    assert done.returncode == 1
    assert (dt.datetime.now() - started).total_seconds() < 30
    recon = dict(warehouse.sql("SELECT source_system_id, error_category FROM metrics_recon"))
    assert recon == {"sleepy": "SQL_EXECUTION_ERROR", "quick": None}
