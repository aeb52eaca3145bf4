"""Records of the state store as API responses."""

from __future__ import annotations

import dataclasses

from deltaflow.metadata.service_records import (
    ApiKeyRecord,
    ServiceRun,
    ServiceStep,
    TenantRecord,
)
from deltaflow.ops.service_runs import RunView
from deltaflow.server.models import (
    KeyOut,
    QuotasOut,
    RunDetailOut,
    RunErrorOut,
    RunOut,
    StepOut,
    TenantOut,
)


def tenant(record: TenantRecord) -> TenantOut:
    kind = record.warehouse.get("type") if record.warehouse else None
    return TenantOut(
        tenant_id=record.tenant_id,
        name=record.name,
        meta_schema=record.meta_schema,
        warehouse_type=str(kind) if kind is not None else None,
        quotas=QuotasOut(**dataclasses.asdict(record.quotas)),
        created_at=record.created_at,
    )


def key(record: ApiKeyRecord) -> KeyOut:
    values = dataclasses.asdict(record)
    values.pop("key_hash")
    return KeyOut(**values)


def run(record: ServiceRun) -> RunOut:
    return RunOut(**_run_fields(record))


def run_detail(view: RunView) -> RunDetailOut:
    return RunDetailOut(
        **_run_fields(view.run),
        steps=[step(s) for s in view.steps],
        dq_results=view.dq_results,
    )


def step(record: ServiceStep) -> StepOut:
    values = dataclasses.asdict(record)
    values.pop("run_id")
    return StepOut(**values)


def _run_fields(record: ServiceRun) -> dict[str, object]:
    error = (
        RunErrorOut(
            code=record.error_code,
            category=record.error_category,
            message=record.error_message,
            hint=record.error_hint,
        )
        if record.error_code
        else None
    )
    return {
        "pipeline_logging_id": record.run_id,
        "tenant_id": record.tenant_id,
        "pipeline_path": record.pipeline_path,
        "pipeline_id": record.pipeline_id,
        "status": record.status,
        "trigger_type": record.trigger_type,
        "request": record.request,
        "requested_at": record.requested_at,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "attempt": record.attempt,
        "max_attempts": record.max_attempts,
        "retry_of": record.retry_of,
        "cancel_requested": bool(record.cancel_requested),
        "rows_read": record.rows_read,
        "rows_loaded": record.rows_loaded,
        "rows_quarantined": record.rows_quarantined,
        "error": error,
    }
