"""Runs: trigger a pipeline for a tenant, list runs, show, cancel, read the log."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from deltaflow.metadata.service_records import RunFilter, stamp
from deltaflow.ops import service_runs
from deltaflow.ops.keys import Principal
from deltaflow.server import render
from deltaflow.server.auth import needs_read, needs_run, state, tenant_for
from deltaflow.server.handlers import errors
from deltaflow.server.models import (
    LogLineOut,
    LogsOut,
    RunDetailOut,
    RunIn,
    RunOut,
    RunPageOut,
    Status,
    TriggerOut,
)

router = APIRouter(tags=["runs"])
Runner = Annotated[Principal, Depends(needs_run)]
Reader = Annotated[Principal, Depends(needs_read)]


@router.post(
    "/pipelines/run/{tenant_id}/{pipeline_path:path}",
    status_code=202,
    response_model=TriggerOut,
    responses=errors(404, 409, 422),
)
def trigger(
    tenant_id: str,
    pipeline_path: str,
    body: RunIn,
    request: Request,
    principal: Runner,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> TriggerOut:
    """Queue a run of ``<configs>/<pipeline_path>.yml`` for the tenant and answer at once;
    the same ``Idempotency-Key`` returns the same run."""
    app = state(request)
    ask = service_runs.TriggerRequest(
        tenant_id=tenant_for(request, principal, tenant_id),
        pipeline_path=pipeline_path,
        date=body.date,
        variables={k: str(v) for k, v in body.variables.items()},
        steps=body.steps,
        idempotency_key=idempotency_key or None,
        allow_concurrent=body.allow_concurrent,
    )
    done = service_runs.trigger_run(app.service, ask, app.queue)
    run = done.run
    return TriggerOut(
        pipeline_logging_id=run.run_id,
        tenant_id=run.tenant_id,
        pipeline_id=run.pipeline_id,
        status=run.status,
        requested_at=run.requested_at,
        started_at=run.started_at,
        created=done.created,
    )


@router.get("/runs", response_model=RunPageOut, responses=errors(404, 422))
def list_runs(
    request: Request,
    principal: Reader,
    pipeline: Annotated[str | None, Query(max_length=500)] = None,
    status: Status | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> RunPageOut:
    """The caller's runs, newest first: filter by pipeline (path or id), status and
    requested time; page with limit/offset or the ``next_cursor`` of the last page."""
    where = RunFilter(
        pipeline=pipeline,
        status=status,
        since=stamp(since) if since else None,
        until=stamp(until) if until else None,
        limit=limit,
        offset=offset,
    )
    tenant = tenant_for(request, principal, tenant_id)
    page = service_runs.list_runs(state(request).service, tenant, where, cursor)
    return RunPageOut(runs=[render.run(r) for r in page.runs], next_cursor=page.next_cursor)


@router.get("/runs/{run_id}", response_model=RunDetailOut, responses=errors(404, 422))
def show_run(
    run_id: str,
    request: Request,
    principal: Reader,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> RunDetailOut:
    """One run with its steps, rows, data-quality results and error."""
    tenant = tenant_for(request, principal, tenant_id)
    return render.run_detail(service_runs.show_run(state(request).service, tenant, run_id))


@router.post(
    "/runs/{run_id}/cancel", status_code=202, response_model=RunOut, responses=errors(404, 422)
)
def cancel_run(
    run_id: str,
    request: Request,
    principal: Runner,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> RunOut:
    """Cancel a run: a queued one at once, a running one at its next batch boundary."""
    tenant = tenant_for(request, principal, tenant_id)
    return render.run(service_runs.cancel_run(state(request).service, tenant, run_id))


@router.get("/runs/{run_id}/logs", response_model=LogsOut, responses=errors(404, 422))
def run_logs(
    run_id: str,
    request: Request,
    principal: Reader,
    after: Annotated[int, Query(ge=0)] = 0,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> LogsOut:
    """The run's log lines after sequence number ``after``."""
    tenant = tenant_for(request, principal, tenant_id)
    lines = service_runs.run_logs(state(request).service, tenant, run_id, after)
    return LogsOut(lines=[LogLineOut(**vars(line)) for line in lines])
