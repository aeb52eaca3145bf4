"""The API's request (``...In``) and response (``...Out``) models: separate, and no
response carries a secret (keys appear whole only in the answer that creates them)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["admin", "run", "read"]
Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def _run_scope() -> list[Scope]:
    return ["run"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuotasIn(_In):
    concurrent_runs: int = Field(default=4, ge=1, le=10_000)
    runs_per_day: int = Field(default=1000, ge=1, le=10_000_000)
    requests_per_minute: int = Field(default=600, ge=1, le=1_000_000)


class TenantIn(_In):
    tenant_id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", examples=["acme"])
    name: str = Field(default="", max_length=200)
    meta_schema: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    """Schema (dataset) of the tenant's metadata tables; default: the tenant id."""
    warehouse: dict[str, Any] | None = None
    """A connection as in a pipeline file; secrets only as ${env:..} / ${file:..}."""
    quotas: QuotasIn | None = None
    new_key: bool = False
    """For a tenant that exists: make another admin key."""


class KeyIn(_In):
    name: str = Field(default="", max_length=200)
    scopes: list[Scope] = Field(default_factory=_run_scope, min_length=1)
    expires_at: dt.datetime | None = None


class RunIn(_In):
    date: dt.date | None = None
    """The date the run is for (the {date} variable)."""
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """The highest layer of the variable hierarchy."""
    steps: list[str] = Field(default_factory=list)
    """Run only these steps (all when empty)."""
    allow_concurrent: bool = False
    """Start even when the pipeline is already queued or running for the tenant."""


class QuotasOut(BaseModel):
    concurrent_runs: int
    runs_per_day: int
    requests_per_minute: int


class TenantOut(BaseModel):
    tenant_id: str
    name: str
    meta_schema: str
    warehouse_type: str | None
    quotas: QuotasOut
    created_at: str


class KeyOut(BaseModel):
    key_id: str
    tenant_id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class NewKeyOut(BaseModel):
    key: KeyOut
    api_key: str
    """The whole key: shown this once, stored only as a hash."""


class OnboardOut(BaseModel):
    tenant: TenantOut
    created: bool
    api_key: str | None
    """The first key (admin scope), shown once; None when the tenant existed."""
    key: KeyOut | None


class TriggerOut(BaseModel):
    pipeline_logging_id: str
    tenant_id: str
    pipeline_id: str
    status: Status
    requested_at: str
    started_at: str | None
    created: bool
    """False when the Idempotency-Key named a run triggered before."""


class RunErrorOut(BaseModel):
    code: str
    category: str | None
    message: str | None
    hint: str | None


class RunOut(BaseModel):
    pipeline_logging_id: str
    tenant_id: str
    pipeline_path: str
    pipeline_id: str
    status: Status
    trigger_type: str
    request: dict[str, Any]
    requested_at: str
    started_at: str | None
    ended_at: str | None
    attempt: int
    max_attempts: int
    retry_of: str | None
    cancel_requested: bool
    rows_read: int | None
    rows_loaded: int | None
    rows_quarantined: int | None
    error: RunErrorOut | None


class StepOut(BaseModel):
    step_id: str
    position: int
    type: str
    status: str
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    rows_read: int | None
    rows_loaded: int | None
    details: dict[str, Any]
    error_code: str | None
    error_message: str | None


class RunDetailOut(RunOut):
    steps: list[StepOut]
    dq_results: dict[str, Any]


class RunPageOut(BaseModel):
    runs: list[RunOut]
    next_cursor: str | None


class LogLineOut(BaseModel):
    seq: int
    at: str
    level: str
    message: str


class LogsOut(BaseModel):
    lines: list[LogLineOut]


class PipelineOut(BaseModel):
    path: str
    pipeline_id: str | None
    description: str
    valid: bool


class PipelineDetailOut(PipelineOut):
    config: dict[str, Any]
    """The pipeline rendered for the tenant; secrets masked, references unresolved."""
    problems: list[str]


class DiagnosticOut(BaseModel):
    file: str
    line: int | None
    path: str
    message: str
    hint: str | None


class ValidationOut(BaseModel):
    valid: bool
    diagnostics: list[DiagnosticOut]


class FieldErrorOut(BaseModel):
    path: str
    message: str


class ErrorOut(BaseModel):
    """Every error answer: a stable code, what went wrong, and how to fix it."""

    code: str
    message: str
    hint: str | None = None
    fields: list[FieldErrorOut] | None = None
    """Where a request was invalid (422)."""
    run_id: str | None = None
    """The run in the way (409)."""
    diagnostics: list[DiagnosticOut] | None = None
    """The pipeline's problems, each at its file:line (422)."""


class HealthOut(BaseModel):
    status: str
    database: str | None = None
    workers: str | None = None
