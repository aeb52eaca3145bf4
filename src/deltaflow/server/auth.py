"""Who sends a request (``X-API-Key``), what it may do, and how often it may ask."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from fastapi import Request

from deltaflow.errors import Code, NotFoundError, RateLimitedError
from deltaflow.metadata.service_records import Scope
from deltaflow.ops.keys import ROOT, Principal, authenticate
from deltaflow.ops.queue import RunQueue
from deltaflow.ops.service import Service
from deltaflow.server.settings import ServerSettings

WINDOW_S = 60.0


@dataclass
class AppState:
    """What every request handler reaches through ``request.app.state.deltaflow``."""

    settings: ServerSettings
    service: Service
    queue: RunQueue
    limiter: RateLimiter


class RateLimiter:
    """Requests per key in fixed one-minute windows (per service process)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key_id: str, limit: int) -> None:
        """Count one request; over ``limit`` this minute raises RateLimitedError."""
        moment = time.monotonic()
        with self._lock:
            start, count = self._windows.get(key_id, (moment, 0))
            if moment - start >= WINDOW_S:
                start, count = moment, 0
            count += 1
            self._windows[key_id] = (start, count)
        if count > limit:
            wait = max(1, math.ceil(WINDOW_S - (moment - start)))
            raise RateLimitedError(
                f"this key sent more than {limit} requests this minute",
                hint=f"retry after {wait} s, or ask for a higher requests_per_minute quota",
                retry_after=wait,
            )


def state(request: Request) -> AppState:
    found: AppState = request.app.state.deltaflow
    return found


def caller(request: Request) -> Principal:
    """The authenticated caller (401 for a missing, wrong, revoked or expired key)."""
    app = state(request)
    if app.settings.no_auth:
        return ROOT
    principal = authenticate(app.service, request.headers.get("x-api-key"), app.settings.admin_key)
    if principal.key_id is not None and principal.requests_per_minute is not None:
        app.limiter.hit(principal.key_id, principal.requests_per_minute)
    return principal


def allowed(request: Request, scope: Scope) -> Principal:
    """The caller, when one of its scopes allows ``scope`` (403 otherwise)."""
    principal = caller(request)
    principal.require(scope)
    return principal


def tenant_for(request: Request, principal: Principal, tenant_id: str | None = None) -> str:
    """The tenant a request acts for: the key's own; for the root admin the one named,
    else the default tenant. Another tenant's is 404, as if it did not exist."""
    if principal.tenant_id is None:
        return tenant_id or state(request).settings.default_tenant
    if tenant_id is not None and tenant_id != principal.tenant_id:
        raise NotFoundError(f"no tenant '{tenant_id}'", code=Code.TENANT_NOT_FOUND)
    return principal.tenant_id


def needs_read(request: Request) -> Principal:
    return allowed(request, "read")


def needs_run(request: Request) -> Principal:
    return allowed(request, "run")


def needs_admin(request: Request) -> Principal:
    return allowed(request, "admin")
