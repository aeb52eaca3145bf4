"""``create_app(settings)``: the FastAPI application of the pipeline service.

The state store opens when the app is made; the workers start and stop with the app's
lifespan (uvicorn's start-up and SIGTERM).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from deltaflow import __version__
from deltaflow.ops.queue import RunQueue
from deltaflow.ops.service import Service
from deltaflow.ops.workers import EmbeddedWorkers
from deltaflow.server import handlers, routes_pipelines, routes_runs, routes_tenants
from deltaflow.server.auth import AppState, RateLimiter, state
from deltaflow.server.models import HealthOut
from deltaflow.server.settings import ServerSettings, open_service

log = logging.getLogger("deltaflow.service")


def create_app(settings: ServerSettings) -> FastAPI:
    """The service's app over the settings' database and folders."""
    deltaflow_log = logging.getLogger("deltaflow")
    if deltaflow_log.level == logging.NOTSET:
        deltaflow_log.setLevel(logging.INFO)  # the runs' log lines are kept from INFO up
    service = open_service(settings)
    store = service.store
    workers = _queue(settings, service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.start_workers:
            await run_in_threadpool(workers.start)
        try:
            yield
        finally:
            if settings.start_workers:
                await run_in_threadpool(workers.stop, True)
            store.close()

    app = FastAPI(
        title="DeltaFlow pipeline service",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    app.state.deltaflow = AppState(settings, service, workers, RateLimiter())
    handlers.install(app)
    api = APIRouter(prefix="/api/v1")
    api.include_router(routes_tenants.router)
    api.include_router(routes_runs.router)
    api.include_router(routes_pipelines.router)
    app.include_router(api)
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=HealthOut)
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=HealthOut,
        responses={503: {"model": HealthOut}},
    )
    return app


def _queue(settings: ServerSettings, service: Service) -> RunQueue:
    """Worker threads in this process, or the queue in PostgreSQL that workers drain."""
    if settings.queue == "embedded":
        return EmbeddedWorkers(service, settings.workers, settings.drain_s)
    from deltaflow.server.pg_queue import ProcrastinateQueue

    return ProcrastinateQueue(service)


def healthz() -> HealthOut:
    """The process is up."""
    return HealthOut(status="ok")


def readyz(request: Request) -> HealthOut | JSONResponse:
    """The database answers and the workers run (503 otherwise)."""
    app = state(request)
    try:
        app.service.store.ping()
        database = "ok"
    except Exception:
        log.warning("readiness: the database does not answer", exc_info=True)
        database = "unreachable"
    workers = "ok" if app.queue.alive() else "stopped"
    body = HealthOut(
        status="ready" if database == workers == "ok" else "not ready",
        database=database,
        workers=workers,
    )
    if body.status != "ready":
        return JSONResponse(body.model_dump(), status_code=503)
    return body
