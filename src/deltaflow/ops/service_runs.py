"""A tenant's runs through the service: trigger, list, show, cancel, read the log.

A trigger is admitted in the transaction that records it: the same ``Idempotency-Key``
returns the run it made; a pipeline already queued or running for the tenant is a
conflict naming that run (unless concurrent runs are asked for); the tenant's
concurrent runs and runs per day are quotas, refused with a clear error, never queued.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deltaflow.errors import Code, NotFoundError, QuotaExceededError, RunConflictError, ServiceError
from deltaflow.metadata.service_records import (
    Admission,
    LogLine,
    RunFilter,
    ServiceRun,
    ServiceStep,
    TenantRecord,
    TriggerType,
)
from deltaflow.ops.queue import RunQueue
from deltaflow.ops.service import Service
from deltaflow.ops.service_pipelines import pipeline_file
from deltaflow.ops.tenants import get_tenant


@dataclass(frozen=True)
class TriggerRequest:
    """A run asked for: the pipeline (its path under configs) and the request body."""

    tenant_id: str
    pipeline_path: str
    date: dt.date | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    """The highest layer of the variable hierarchy."""
    steps: Sequence[str] = ()
    idempotency_key: str | None = None
    allow_concurrent: bool = False
    trigger_type: TriggerType = "api"


@dataclass(frozen=True)
class Triggered:
    run: ServiceRun
    created: bool
    """False when the idempotency key named a run made before."""


@dataclass(frozen=True)
class RunPage:
    runs: list[ServiceRun]
    next_cursor: str | None


@dataclass(frozen=True)
class RunView:
    """One run with its steps and its data-quality results (by quality step)."""

    run: ServiceRun
    steps: list[ServiceStep]
    dq_results: dict[str, Any]


def trigger_run(svc: Service, request: TriggerRequest, queue: RunQueue) -> Triggered:
    """Validate the pipeline with the request, admit and record the run, queue it."""
    tenant = get_tenant(svc, request.tenant_id)
    pipeline_id = _checked_pipeline(svc, request)
    run = ServiceRun(
        run_id=uuid.uuid4().hex,
        tenant_id=tenant.tenant_id,
        pipeline_path=request.pipeline_path,
        pipeline_id=pipeline_id,
        status="queued",
        trigger_type=request.trigger_type,
        request={
            "date": request.date.isoformat() if request.date else None,
            "variables": dict(request.variables),
            "steps": list(request.steps),
        },
        idempotency_key=request.idempotency_key,
        max_attempts=svc.max_attempts,
    )
    stored, created = svc.store.insert_run(run, _admit(tenant, request))
    if created:
        queue.enqueue(stored.run_id)
    return Triggered(stored, created)


def _checked_pipeline(svc: Service, request: TriggerRequest) -> str:
    """The pipeline's id for the tenant; its problems (and unknown steps) raise here,
    before anything is queued."""
    from deltaflow.config.loader import RunContext, load_pipeline
    from deltaflow.config.models import select_steps

    file = pipeline_file(svc, request.tenant_id, request.pipeline_path)
    context = RunContext(tenant_id=request.tenant_id, run_date=request.date)
    loaded = load_pipeline(file, cli_vars=request.variables, context=context, resolve_secrets=False)
    select_steps(loaded.pipeline.steps, list(request.steps))
    return loaded.pipeline.pipeline_id


def _admit(tenant: TenantRecord, request: TriggerRequest) -> Any:
    def admit(seen: Admission) -> None:
        same = [r for r in seen.active if r.pipeline_path == request.pipeline_path]
        if same and not request.allow_concurrent:
            raise RunConflictError(
                f"pipeline '{request.pipeline_path}' is already {same[0].status} for tenant "
                f"'{tenant.tenant_id}' as run {same[0].run_id}",
                hint="wait for that run, cancel it, or ask for allow_concurrent",
                run_id=same[0].run_id,
            )
        limit = tenant.quotas.concurrent_runs
        if len(seen.active) >= limit:
            raise QuotaExceededError(
                f"tenant '{tenant.tenant_id}' has {len(seen.active)} runs queued or running, "
                f"its quota of concurrent runs is {limit}; the run was not queued",
                hint="trigger it again when a run has finished, or raise the quota",
            )
        if seen.runs_today >= tenant.quotas.runs_per_day:
            raise QuotaExceededError(
                f"tenant '{tenant.tenant_id}' has used its quota of "
                f"{tenant.quotas.runs_per_day} runs today (UTC); the run was not queued",
                hint="trigger it again tomorrow (UTC), or raise the quota",
            )

    return admit


def list_runs(svc: Service, tenant_id: str, where: RunFilter, cursor: str | None) -> RunPage:
    """A page of the tenant's runs, newest first; ``next_cursor`` fetches the next."""
    get_tenant(svc, tenant_id)
    if cursor:
        where = RunFilter(**{**vars(where), "after": _decode(cursor), "offset": 0})
    found = svc.store.list_runs(tenant_id, where)
    more = len(found) == where.limit
    next_cursor = _encode(found[-1]) if more and found else None
    return RunPage(found, next_cursor)


def show_run(svc: Service, tenant_id: str, run_id: str) -> RunView:
    """The tenant's run with its steps and data-quality results."""
    run = _run(svc, tenant_id, run_id)
    steps = svc.store.steps(tenant_id, run_id)
    dq = {s.step_id: s.details for s in steps if s.type == "quality"}
    return RunView(run, steps, dq)


def cancel_run(svc: Service, tenant_id: str, run_id: str) -> ServiceRun:
    """Cancel a queued run now; ask a running one to stop at its next batch boundary."""
    run = svc.store.request_cancel(tenant_id, run_id)
    if run is None:
        raise _missing(run_id)
    return run


def run_logs(svc: Service, tenant_id: str, run_id: str, after: int = 0) -> list[LogLine]:
    """The run's log lines after sequence number ``after``."""
    _run(svc, tenant_id, run_id)
    return svc.store.logs(tenant_id, run_id, after)


def _run(svc: Service, tenant_id: str, run_id: str) -> ServiceRun:
    run = svc.store.run(tenant_id, run_id)
    if run is None:
        raise _missing(run_id)
    return run


def _missing(run_id: str) -> NotFoundError:
    return NotFoundError(
        f"no run '{run_id}'", hint="GET /api/v1/runs lists your runs", code=Code.RUN_NOT_FOUND
    )


def _encode(run: ServiceRun) -> str:
    return base64.urlsafe_b64encode(f"{run.requested_at}|{run.run_id}".encode()).decode()


def _decode(cursor: str) -> tuple[str, str]:
    try:
        at, _, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
    except (binascii.Error, UnicodeError, ValueError):
        at, run_id = "", ""
    if not at or not run_id:
        raise ServiceError(
            f"the cursor '{cursor}' is not valid",
            hint="pass the next_cursor of a previous page, or leave it out",
        )
    return at, run_id
