"""The pipeline service's records: one dataclass per table row, and what queries take."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TriggerType = Literal["api", "scheduler", "retry"]
Scope = Literal["admin", "run", "read"]

RUN_STATUSES: tuple[RunStatus, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE: tuple[RunStatus, ...] = ("queued", "running")
SCOPES: tuple[Scope, ...] = ("read", "run", "admin")
"""Weakest first: a scope allows what every scope before it allows."""


def now() -> str:
    """The current time as the service stores times: ISO 8601, UTC, milliseconds."""
    return stamp(dt.datetime.now(dt.UTC))


def stamp(moment: dt.datetime) -> str:
    """A time in the stored format (a naive time is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


@dataclass
class Quotas:
    """What one tenant may use."""

    concurrent_runs: int = 4
    runs_per_day: int = 1000
    requests_per_minute: int = 600


@dataclass
class TenantRecord:
    tenant_id: str
    name: str
    meta_schema: str
    warehouse: dict[str, Any] | None
    """A connection config whose secrets are ``${env:..}``/``${file:..}`` references."""
    quotas: Quotas = field(default_factory=Quotas)
    created_at: str = field(default_factory=now)


@dataclass
class ApiKeyRecord:
    key_id: str
    tenant_id: str
    name: str
    prefix: str
    """The first 12 characters of the key: shown, to tell keys apart."""
    key_hash: str
    """sha256 of the whole key (hex); the key itself is never stored."""
    scopes: list[Scope]
    created_at: str = field(default_factory=now)
    expires_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None


@dataclass
class ServiceRun:
    run_id: str
    tenant_id: str
    pipeline_path: str
    pipeline_id: str
    status: RunStatus
    trigger_type: TriggerType
    request: dict[str, Any]
    """What the trigger asked for: ``date``, ``variables``, ``steps``."""
    requested_at: str = field(default_factory=now)
    idempotency_key: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    worker_id: str | None = None
    heartbeat_at: str | None = None
    attempt: int = 1
    max_attempts: int = 1
    retry_of: str | None = None
    cancel_requested: bool = False
    error_code: str | None = None
    error_category: str | None = None
    error_message: str | None = None
    error_hint: str | None = None
    rows_read: int | None = None
    rows_loaded: int | None = None
    rows_quarantined: int | None = None


@dataclass
class ServiceStep:
    run_id: str
    step_id: str
    position: int
    type: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    rows_read: int | None = None
    rows_loaded: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class LogLine:
    seq: int
    at: str
    level: str
    message: str


@dataclass(frozen=True)
class RunFilter:
    """Which of a tenant's runs to list, newest first."""

    pipeline: str | None = None
    """A pipeline path or pipeline id."""
    status: RunStatus | None = None
    since: str | None = None
    """Requested at or after this time."""
    until: str | None = None
    """Requested before this time."""
    limit: int = 50
    offset: int = 0
    after: tuple[str, str] | None = None
    """Keyset cursor: (requested_at, run_id) of the last run of the previous page."""


@dataclass(frozen=True)
class Admission:
    """What a new run's admission looks at, read in the transaction that inserts it."""

    active: list[ServiceRun]
    """The tenant's queued and running runs."""
    runs_today: int
    """Runs the tenant requested since midnight UTC."""
