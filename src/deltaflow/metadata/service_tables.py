"""The pipeline service's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are ISO 8601 text in UTC with milliseconds (``2025-11-18T10:00:00.000+00:00``):
one format everywhere, so text order is time order on both engines. JSON columns hold
text that passed secret redaction.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("meta_schema", String(128), nullable=False),
    Column("warehouse", JSON, nullable=True),  # a connection; secrets as references only
    Column("concurrent_runs", Integer, nullable=False),
    Column("runs_per_day", Integer, nullable=False),
    Column("requests_per_minute", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("prefix", String(12), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False),  # sha256 of the whole key, hex
    Column("scopes", JSON, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=True),
    Column("revoked_at", String(40), nullable=True),
    Column("last_used_at", String(40), nullable=True),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(40), primary_key=True),  # the pipeline_logging_id
    Column("tenant_id", String(64), ForeignKey("tenants.tenant_id"), nullable=False),
    Column("pipeline_path", Text, nullable=False),
    Column("pipeline_id", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger_type", String(16), nullable=False),
    Column("idempotency_key", String(200), nullable=True),
    Column("request", JSON, nullable=False),  # date, variables, steps
    Column("requested_at", String(40), nullable=False),
    Column("started_at", String(40), nullable=True),
    Column("ended_at", String(40), nullable=True),
    Column("worker_id", String(200), nullable=True),
    Column("heartbeat_at", String(40), nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("retry_of", String(40), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("error_code", String(64), nullable=True),
    Column("error_category", String(32), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("error_hint", Text, nullable=True),
    Column("rows_read", Integer, nullable=True),
    Column("rows_loaded", Integer, nullable=True),
    Column("rows_quarantined", Integer, nullable=True),
    UniqueConstraint("tenant_id", "idempotency_key", name="runs_idempotency"),
    Index("runs_tenant_requested", "tenant_id", "requested_at"),
    Index("runs_status", "status"),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("run_id", String(40), ForeignKey("runs.run_id"), primary_key=True),
    Column("step_id", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", String(40), nullable=True),
    Column("ended_at", String(40), nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("rows_read", Integer, nullable=True),
    Column("rows_loaded", Integer, nullable=True),
    Column("details", JSON, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("run_id", String(40), ForeignKey("runs.run_id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", Text, nullable=False),
)
