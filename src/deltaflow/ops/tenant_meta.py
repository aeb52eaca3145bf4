"""A tenant's run history in its own warehouse: the ``x_meta_pipeline_runs``,
``x_meta_step_logs`` and ``x_meta_dq_results`` tables (``metadata.warehouse_meta``) in the
tenant's metadata schema, written for every run the service ends.

A tenant onboarded without a warehouse keeps these tables in the service's default
warehouse, a DuckDB file in the service's state folder, in its own schema.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from deltaflow.metadata.service_records import ServiceRun, ServiceStep, TenantRecord
from deltaflow.metadata.warehouse_meta import MetaCheck, MetaRun, MetaStep, write_run
from deltaflow.ops.service import Service

log = logging.getLogger("deltaflow.service")


def tenant_warehouse(svc: Service, tenant: TenantRecord) -> dict[str, Any]:
    """The tenant's warehouse connection as given at onboarding, or the default one."""
    if tenant.warehouse is not None:
        return tenant.warehouse
    return {"type": "duckdb", "path": str(svc.state_dir / "warehouse.duckdb")}


def record_run(svc: Service, run: ServiceRun, steps: list[ServiceStep]) -> None:
    """Write the run, its steps and its checks into the tenant's metadata tables. A
    failure is logged with the run and does not change the run's outcome."""
    from deltaflow.connectors.protocol import RunResources
    from deltaflow.ops.tenants import tenant_connection

    tenant = svc.store.tenant(run.tenant_id)
    if tenant is None:
        return
    resources = RunResources(svc.configs, run.run_id)
    try:
        conn = tenant_connection(svc, tenant_warehouse(svc, tenant))
        checks = [c for s in steps for c in _checks(run.run_id, s)]
        write_run(conn, resources, tenant.meta_schema, _run(run), _steps(steps), checks)
    except Exception:
        log.exception(
            "writing run %s to the metadata tables of %s failed", run.run_id, run.tenant_id
        )
    finally:
        resources.close()


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC) if text else None


def _run(run: ServiceRun) -> MetaRun:
    started = _time(run.started_at) or _time(run.requested_at)
    assert started is not None  # every run has a request time
    return MetaRun(
        pipeline_logging_id=run.run_id,
        tenant_id=run.tenant_id,
        pipeline_id=run.pipeline_id or run.pipeline_path,
        status=run.status,
        started_at=started,
        trigger_type=run.trigger_type,
        ended_at=_time(run.ended_at),
        rows_read=run.rows_read,
        rows_loaded=run.rows_loaded,
        rows_quarantined=run.rows_quarantined,
        error_code=run.error_code,
        error_category=run.error_category,
        error_message=run.error_message,
        run_metadata={
            "pipeline_path": run.pipeline_path,
            "attempt": run.attempt,
            "retry_of": run.retry_of,
            "worker_id": run.worker_id,
            "date": run.request.get("date"),
            "steps": run.request.get("steps") or [],
        },
    )


def _steps(steps: list[ServiceStep]) -> list[MetaStep]:
    return [
        MetaStep(
            pipeline_logging_id=s.run_id,
            step_id=s.step_id,
            ps_type=s.type,
            status=s.status,
            started_at=_time(s.started_at),
            ended_at=_time(s.ended_at),
            rows_processed=s.rows_read,
            rows_loaded=s.rows_loaded,
            rows_quarantined=int(s.details.get("quarantined", 0) or 0),
            error_message=s.error_message,
            details=s.details,
        )
        for s in steps
    ]


def _checks(run_id: str, step: ServiceStep) -> list[MetaCheck]:
    """The results of a quality step's checks (its details' ``checks``)."""
    return [
        MetaCheck(
            pipeline_logging_id=run_id,
            table_name=str(c.get("table") or ""),
            check_name=str(c.get("name") or ""),
            check_type=str(c.get("check") or ""),
            status=str(c.get("status") or ""),
            severity=c.get("severity"),
            column_name=c.get("column"),
            row_count=c.get("rows_checked"),
            failing_rows=c.get("failing_rows"),
            observed=c.get("observed"),
            message=c.get("message"),
        )
        for c in step.details.get("checks", [])
        if isinstance(c, dict)
    ]
