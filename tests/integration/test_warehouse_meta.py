"""A tenant's metadata tables (x_meta_pipeline_runs, x_meta_step_logs, x_meta_dq_results)
in a DuckDB file, the suite's PostgreSQL server and the BigQuery emulator: created once
however often they are ensured, a run written twice is held once, values come back as
written (JSON, UTC timestamps), and a secret in a message is stored masked."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deltaflow.config.connections import (
    BigQueryConnection,
    ConnectionBase,
    DuckDBConnection,
    PostgresConnection,
)
from deltaflow.config.secrets import MASK, remember
from deltaflow.connectors import open_warehouse
from deltaflow.connectors.protocol import RunResources
from deltaflow.errors import ConfigError, SchemaError
from deltaflow.metadata.warehouse_meta import (
    CHECKS,
    RUNS,
    STEPS,
    MetaCheck,
    MetaRun,
    MetaStep,
    ensure_meta_tables,
    write_run,
)
from tests.support.bigquery import BigQueryEmulator

CEST = dt.timezone(dt.timedelta(hours=2))
RUN_ID = "run-7f3a"
STARTED = dt.datetime(2025, 11, 18, 12, 30, 0, 123456, tzinfo=CEST)  # 10:30:00.123456 UTC
ENDED = STARTED + dt.timedelta(seconds=95, milliseconds=1)

#: each engine's column types for the logical types of the tables
ENGINE_TYPES = {
    "duckdb": {
        "text": "VARCHAR",
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "int": "BIGINT",
        "json": "JSON",
        "date": "DATE",
    },
    "postgres": {
        "text": "text",
        "timestamp": "timestamp with time zone",
        "int": "bigint",
        "json": "jsonb",
        "date": "date",
    },
    "bigquery": {
        "text": "STRING",
        "timestamp": "TIMESTAMP",
        "int": "INTEGER",
        "json": "JSON",
        "date": "DATE",
    },
}


class Tenant:
    """A warehouse connection and the tenant's metadata schema in it."""

    def __init__(self, engine: str, conn: ConnectionBase, schema: str, resources: RunResources):
        self.engine, self.conn, self.schema, self.resources = engine, conn, schema, resources
        self.warehouse = open_warehouse(conn, resources)

    def rows(self, table: str, order: str) -> list[dict[str, Any]]:
        ref = self.warehouse.table_ref(f"{self.schema}.{table}")
        rows: list[dict[str, Any]] = self.warehouse.query(
            f"SELECT * FROM {ref} ORDER BY {order}"
        ).to_pylist()
        return rows


@pytest.fixture(params=["duckdb", "postgres", "bigquery"])
def tenant(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tenant]:
    resources = RunResources(tmp_path, "meta")
    engine: str = request.param
    schema = f"acme_{uuid.uuid4().hex[:8]}"
    conn: ConnectionBase
    if engine == "duckdb":
        conn = DuckDBConnection(type="duckdb", path=str(tmp_path / "warehouse.duckdb"))
    elif engine == "postgres":
        conn = PostgresConnection(type="postgres", dsn=request.getfixturevalue("pg_dsn"))
    else:
        emulator: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
        conn = BigQueryConnection(
            type="bigquery",
            project=emulator.project,
            dataset=request.getfixturevalue("bq_dataset"),
            credentials="anonymous",
            api_endpoint=emulator.endpoint,
            storage_endpoint=f"127.0.0.1:{emulator.grpc_port}",
            timeout=60,
        )
    yield Tenant(engine, conn, schema, resources)
    resources.close()
    if engine == "bigquery":  # the tenant's dataset, made by ensure_meta_tables
        emulator.client().delete_dataset(
            schema, delete_contents=True, not_found_ok=True, timeout=30
        )


def column_types(tenant: Tenant, table: str) -> dict[str, str]:
    """The table's columns and their types as the engine reports them."""
    if tenant.engine == "bigquery":
        from deltaflow.connectors.bigquery.clients import client

        assert isinstance(tenant.conn, BigQueryConnection)

        found = client(tenant.conn, tenant.resources).get_table(
            f"{tenant.conn.project}.{tenant.schema}.{table}", timeout=30
        )
        return {f.name: f.field_type for f in found.schema}
    sql = (
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{tenant.schema}' AND table_name = '{table}' "
        "ORDER BY ordinal_position"
    )
    return {r["column_name"]: r["data_type"] for r in tenant.warehouse.query(sql).to_pylist()}


def a_run(
    status: str = "SUCCESS", **changes: Any
) -> tuple[MetaRun, list[MetaStep], list[MetaCheck]]:
    run = MetaRun(
        pipeline_logging_id=RUN_ID,
        tenant_id="acme_corp",
        pipeline_id="acme_corp-gcp-cost-billing",
        status=status,
        started_at=STARTED,
        trigger_type="api",
        trigger_by="key:df_3kx9",
        ended_at=ENDED,
        rows_read=1000,
        rows_loaded=998,
        rows_quarantined=2,
        run_metadata={
            "config_version": "abc123def",
            "variables": {"date": "2025-11-18", "admin_email": "admin@example.com"},
            "steps": [{"name": "load_billing", "rows": 998, "ok": True, "ratio": 0.5}],
        },
    )
    steps = [
        MetaStep(
            pipeline_logging_id=RUN_ID,
            step_id=step_id,
            ps_type=ps_type,
            status="SUCCESS",
            started_at=STARTED + dt.timedelta(seconds=i),
            ended_at=STARTED + dt.timedelta(seconds=i + 1),
            duration_ms=1000,
            rows_processed=rows,
            rows_loaded=rows,
            rows_quarantined=0,
            details={"write_mode": "merge", "position": i},
        )
        for i, (step_id, ps_type, rows) in enumerate(
            [("load_billing", "sync", 998), ("check_billing", "quality", 0), ("notify", "sql", 0)]
        )
    ]
    checks = [
        MetaCheck(
            pipeline_logging_id=RUN_ID,
            table_name="billing_cost_daily",
            check_name="not_null_check",
            check_type="not_null",
            column_name="billing_account_id",
            severity="critical",
            status="PASSED",
            row_count=998,
            failing_rows=0,
            observed=0,
            message="",
        ),
        MetaCheck(
            pipeline_logging_id=RUN_ID,
            table_name="billing_cost_daily",
            check_name="cost_between",
            check_type="between",
            column_name="cost",
            severity="warning",
            status="WARNED",
            row_count=998,
            failing_rows=3,
            observed={"min": -1.5, "max": 12.25},
            message="3 rows outside [0, 10]",
        ),
    ]
    return replace(run, **changes), steps, checks


def as_json(value: Any) -> Any:
    """A JSON column's value as Python: engines hand JSON back as its text."""
    return json.loads(value) if isinstance(value, str) else value


def test_tables_are_created_once_and_a_run_written_twice_is_held_once(tenant: Tenant) -> None:
    ensure_meta_tables(tenant.conn, tenant.resources, tenant.schema)
    ensure_meta_tables(tenant.conn, tenant.resources, tenant.schema)
    expected = ENGINE_TYPES[tenant.engine]
    for table in (RUNS, STEPS, CHECKS):
        wanted = {c: expected[kind] for c, kind in table.columns.items()}
        assert column_types(tenant, table.name) == wanted, table.name

    running, _, _ = a_run("RUNNING", ended_at=None, rows_loaded=None)
    write_run(tenant.conn, tenant.resources, tenant.schema, running)
    run, steps, checks = a_run()
    write_run(tenant.conn, tenant.resources, tenant.schema, run, steps, checks)
    write_run(tenant.conn, tenant.resources, tenant.schema, run, steps, checks)

    (stored,) = tenant.rows(RUNS.name, "pipeline_logging_id")
    assert as_json(stored.pop("run_metadata")) == run.run_metadata
    assert stored == {
        "pipeline_logging_id": RUN_ID,
        "tenant_id": "acme_corp",
        "pipeline_id": "acme_corp-gcp-cost-billing",
        "status": "SUCCESS",
        "trigger_type": "api",
        "trigger_by": "key:df_3kx9",
        "started_at": STARTED,
        "ended_at": ENDED,
        "duration_ms": 95_001,
        "rows_read": 1000,
        "rows_loaded": 998,
        "rows_quarantined": 2,
        "error_code": None,
        "error_category": None,
        "error_message": None,
        "ingestion_date": dt.date(2025, 11, 18),
    }
    assert stored["started_at"].astimezone(dt.UTC).isoformat() == "2025-11-18T10:30:00.123456+00:00"

    stored_steps = tenant.rows(STEPS.name, "started_at")
    assert [as_json(s.pop("details")) for s in stored_steps] == [s.details for s in steps]
    assert stored_steps == [
        {
            "pipeline_logging_id": RUN_ID,
            "step_id": s.step_id,
            "ps_type": s.ps_type,
            "status": "SUCCESS",
            "started_at": s.started_at,
            "ended_at": s.ended_at,
            "duration_ms": 1000,
            "rows_processed": s.rows_processed,
            "rows_loaded": s.rows_loaded,
            "rows_quarantined": 0,
            "error_message": None,
        }
        for s in steps
    ]

    stored_checks = tenant.rows(CHECKS.name, "check_name")
    assert [as_json(c.pop("observed")) for c in stored_checks] == [{"min": -1.5, "max": 12.25}, 0]
    assert [(c["check_name"], c["status"], c["failing_rows"]) for c in stored_checks] == [
        ("cost_between", "WARNED", 3),
        ("not_null_check", "PASSED", 0),
    ]
    assert stored_checks[0] | {"observed": None} == {
        "pipeline_logging_id": RUN_ID,
        "table_name": "billing_cost_daily",
        "check_name": "cost_between",
        "check_type": "between",
        "column_name": "cost",
        "severity": "warning",
        "status": "WARNED",
        "row_count": 998,
        "failing_rows": 3,
        "observed": None,
        "message": "3 rows outside [0, 10]",
    }


def test_a_secret_in_a_message_is_stored_masked(tenant: Tenant) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    remember(secret)
    failure = f"connection to postgresql://loader:{secret}@db/billing refused"
    run, steps, checks = a_run(
        "FAILED",
        error_code="CONNECTION_FAILED",
        error_category="connector",
        error_message=failure,
        run_metadata={
            "dsn": f"postgresql://loader:{secret}@db",
            "tries": [secret],
            "cause": ConnectionError(failure),
        },
    )
    steps[0] = replace(steps[0], status="FAILED", error_message=failure)
    checks[1] = replace(checks[1], message=failure, observed={"sample": secret})

    write_run(tenant.conn, tenant.resources, tenant.schema, run, steps, checks)

    stored = [
        *tenant.rows(RUNS.name, "pipeline_logging_id"),
        *tenant.rows(STEPS.name, "step_id"),
        *tenant.rows(CHECKS.name, "check_name"),
    ]
    assert secret not in repr(stored)
    masked = f"connection to postgresql://loader:{MASK}@db/billing refused"
    assert stored[0]["error_message"] == masked
    assert as_json(stored[0]["run_metadata"]) == {
        "dsn": f"postgresql://loader:{MASK}@db",
        "tries": [MASK],
        "cause": masked,
    }
    assert {s["step_id"]: s["error_message"] for s in stored[1:4]}["load_billing"] == masked
    assert stored[4]["message"] == masked  # cost_between
    assert as_json(stored[4]["observed"]) == {"sample": MASK}


@pytest.mark.parametrize("schema", ["acme-corp", "", "1tenant", "a.b", "x" * 64])
def test_a_bad_schema_name_is_refused_with_the_rule(tmp_path: Path, schema: str) -> None:
    conn = DuckDBConnection(type="duckdb", path=str(tmp_path / "warehouse.duckdb"))
    with pytest.raises(ConfigError) as raised:
        ensure_meta_tables(conn, RunResources(tmp_path, "meta"), schema)
    assert f"metadata schema '{schema}'" in raised.value.message
    assert "letters, digits and underscores" in str(raised.value.hint)


def test_a_naive_time_and_a_step_of_another_run_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"MetaRun\.started_at 2025-11-18T10:30:00 has no time"):
        a_run(started_at=dt.datetime(2025, 11, 18, 10, 30))

    conn = DuckDBConnection(type="duckdb", path=str(tmp_path / "warehouse.duckdb"))
    run, steps, _ = a_run()
    stray = replace(steps[0], pipeline_logging_id="run-other")
    with pytest.raises(ConfigError, match=r"MetaStep of run 'run-other' given with run 'run-7f3a'"):
        write_run(conn, RunResources(tmp_path, "meta"), "acme", run, [stray])


def test_append_rows_names_an_unknown_row_type_and_the_valid_ones(tmp_path: Path) -> None:
    from deltaflow.connectors import append_rows

    conn = DuckDBConnection(type="duckdb", path=str(tmp_path / "warehouse.duckdb"))
    with pytest.raises(ConfigError, match=r"unknown row type\(s\) 'jsonb'") as raised:
        append_rows(conn, RunResources(tmp_path, "r"), "t", [{"a": 1}], {"a": "jsonb"})
    assert raised.value.hint == (
        "use one of: decimal, date, timestamp, int, json (other columns are text)"
    )
