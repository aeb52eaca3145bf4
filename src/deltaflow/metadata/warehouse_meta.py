"""A tenant's metadata tables in its own warehouse: every run, step and data-quality
result the pipeline service executes for it, where the tenant can query them.

Three tables in the tenant's schema (or BigQuery dataset), named as users of the
Convergence design query them today::

    x_meta_pipeline_runs   one row per run            merged on (pipeline_logging_id)
    x_meta_step_logs       one row per step of a run  (pipeline_logging_id, step_id)
    x_meta_dq_results      one row per check result   (pipeline_logging_id, check_name,
                                                       table_name)

Columns are logical types (``RUNS``, ``STEPS``, ``CHECKS``); each engine's destination
gives them its types: timestamps are UTC (DuckDB TIMESTAMPTZ, PostgreSQL timestamptz,
BigQuery TIMESTAMP), JSON is the engine's JSON type (DuckDB JSON, PostgreSQL jsonb,
BigQuery JSON). ``write_run`` merges, so writing a run again (its status moved on, a
retry) replaces its rows instead of adding new ones. Every text value, inside JSON too,
passes ``deltaflow.config.secrets.redact`` before it is written.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from deltaflow.config.secrets import redact
from deltaflow.connectors.registry import append_rows, ensure_rows_table, row_schema
from deltaflow.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    from deltaflow.config.connections import ConnectionBase
    from deltaflow.connectors.protocol import RunResources
    from deltaflow.schema.types import TableSchema

__all__ = [
    "CHECKS",
    "RUNS",
    "STEPS",
    "MetaCheck",
    "MetaRun",
    "MetaStep",
    "MetaTable",
    "ensure_meta_tables",
    "write_run",
]


@dataclass(frozen=True)
class MetaTable:
    """A metadata table: its name, its columns (column -> ``text`` or one of
    ``deltaflow.connectors.registry.ROW_TYPES``) and the key its rows are merged on."""

    name: str
    columns: dict[str, str]
    key: tuple[str, ...]

    def schema(self) -> TableSchema:
        return row_schema(list(self.columns), self.types(), self.key)

    def types(self) -> dict[str, str]:
        """The columns that are not text, as ``append_rows`` is told them."""
        return {column: kind for column, kind in self.columns.items() if kind != "text"}


RUNS = MetaTable(
    "x_meta_pipeline_runs",
    {
        "pipeline_logging_id": "text",
        "tenant_id": "text",
        "pipeline_id": "text",
        "status": "text",
        "trigger_type": "text",
        "trigger_by": "text",
        "started_at": "timestamp",
        "ended_at": "timestamp",
        "duration_ms": "int",
        "rows_read": "int",
        "rows_loaded": "int",
        "rows_quarantined": "int",
        "error_code": "text",
        "error_category": "text",
        "error_message": "text",
        "run_metadata": "json",
        "ingestion_date": "date",
    },
    ("pipeline_logging_id",),
)
STEPS = MetaTable(
    "x_meta_step_logs",
    {
        "pipeline_logging_id": "text",
        "step_id": "text",
        "ps_type": "text",
        "status": "text",
        "started_at": "timestamp",
        "ended_at": "timestamp",
        "duration_ms": "int",
        "rows_processed": "int",
        "rows_loaded": "int",
        "rows_quarantined": "int",
        "error_message": "text",
        "details": "json",
    },
    ("pipeline_logging_id", "step_id"),
)
CHECKS = MetaTable(
    "x_meta_dq_results",
    {
        "pipeline_logging_id": "text",
        "table_name": "text",
        "check_name": "text",
        "check_type": "text",
        "column_name": "text",
        "severity": "text",
        "status": "text",
        "row_count": "int",
        "failing_rows": "int",
        "observed": "json",
        "message": "text",
    },
    ("pipeline_logging_id", "check_name", "table_name"),
)

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class MetaRun:
    """One run of a pipeline for a tenant (a row of ``x_meta_pipeline_runs``).

    ``duration_ms`` left out is ``ended_at - started_at``; the row's ``ingestion_date``
    is the UTC date of ``started_at``."""

    pipeline_logging_id: str
    tenant_id: str
    pipeline_id: str
    status: str
    started_at: dt.datetime
    trigger_type: str | None = None
    trigger_by: str | None = None
    ended_at: dt.datetime | None = None
    duration_ms: int | None = None
    rows_read: int | None = None
    rows_loaded: int | None = None
    rows_quarantined: int | None = None
    error_code: str | None = None
    error_category: str | None = None
    error_message: str | None = None
    run_metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_times(self)


@dataclass(frozen=True)
class MetaStep:
    """One step of a run (a row of ``x_meta_step_logs``); ``ps_type`` is the step's type."""

    pipeline_logging_id: str
    step_id: str
    ps_type: str
    status: str
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration_ms: int | None = None
    rows_processed: int | None = None
    rows_loaded: int | None = None
    rows_quarantined: int | None = None
    error_message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_times(self)


@dataclass(frozen=True)
class MetaCheck:
    """One data-quality result of a run (a row of ``x_meta_dq_results``): ``row_count``
    rows checked, ``failing_rows`` of them failed; ``observed`` is any JSON value."""

    pipeline_logging_id: str
    table_name: str
    check_name: str
    check_type: str
    status: str
    severity: str | None = None
    column_name: str | None = None
    row_count: int | None = None
    failing_rows: int | None = None
    observed: Any = None
    message: str | None = None


def ensure_meta_tables(conn: ConnectionBase, resources: RunResources, schema: str) -> None:
    """Create the schema (dataset) ``schema`` and the three metadata tables in the
    warehouse of ``conn`` where they are missing; calling it again changes nothing."""
    _check_schema(schema)
    for table in (RUNS, STEPS, CHECKS):
        ensure_rows_table(conn, resources, f"{schema}.{table.name}", table.schema())


def write_run(
    conn: ConnectionBase,
    resources: RunResources,
    schema: str,
    run: MetaRun,
    steps: Sequence[MetaStep] = (),
    checks: Sequence[MetaCheck] = (),
) -> None:
    """Write one run with its steps and data-quality results to the metadata tables in
    ``schema`` (created when missing), text values redacted.

    Rows are merged on their keys: writing the same run again replaces its rows. The
    run's row is written last, so a reader who finds the run finds its steps and checks.
    """
    _check_schema(schema)
    records: list[MetaStep | MetaCheck] = [*steps, *checks]
    for record in records:
        if record.pipeline_logging_id != run.pipeline_logging_id:
            raise ConfigError(
                f"{type(record).__name__} of run '{record.pipeline_logging_id}' given with run "
                f"'{run.pipeline_logging_id}'",
                hint="write each run's steps and checks with that run",
            )
    for table, rows in (
        (STEPS, [_row(s) for s in steps]),
        (CHECKS, [_row(c) for c in checks]),
        (RUNS, [_run_row(run)]),
    ):
        ordered = [{column: row[column] for column in table.columns} for row in rows]
        append_rows(conn, resources, f"{schema}.{table.name}", ordered, table.types(), table.key)


def _run_row(run: MetaRun) -> dict[str, Any]:
    row = _row(run)
    row["ingestion_date"] = row["started_at"].date()
    if run.duration_ms is None and run.ended_at is not None:
        row["duration_ms"] = round((run.ended_at - run.started_at) / dt.timedelta(milliseconds=1))
    return row


def _row(record: MetaRun | MetaStep | MetaCheck) -> dict[str, Any]:
    """The record's values, text redacted (inside JSON values too), times in UTC."""
    row = {f.name: getattr(record, f.name) for f in fields(record)}
    for name, value in row.items():
        if isinstance(value, dt.datetime):
            row[name] = value.astimezone(dt.UTC)
        else:
            row[name] = _redacted(value)
    return row


def _redacted(value: Any) -> Any:
    """JSON's values as they are, strings redacted; any other value (an exception, a
    date, a path) as its redacted text, so nothing reaches the table unredacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return redact(str(value))


def _check_times(record: MetaRun | MetaStep) -> None:
    """Metadata times are UTC instants: a naive datetime is refused, it names no instant."""
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, dt.datetime) and value.utcoffset() is None:
            raise SchemaError(
                f"{type(record).__name__}.{f.name} {value.isoformat()} has no time zone",
                hint="pass an aware datetime, e.g. datetime.now(datetime.UTC)",
            )


def _check_schema(schema: str) -> None:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"metadata schema '{schema}' is not a valid schema or dataset name",
            hint="use 1 to 63 letters, digits and underscores, not starting with a digit "
            "(e.g. 'acme_corp')",
        )
