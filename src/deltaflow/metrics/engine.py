"""Run metrics for a date where the data lives, write their results and a reconciliation
record for every one of them.

A metric's SQL is BigQuery SQL by default (``dialect``); its placeholders are filled
(``deltaflow.metrics.placeholders``) and it is transpiled with sqlglot for the warehouse
that runs it (DuckDB, PostgreSQL or BigQuery). Metrics run concurrently (``workers``),
each with a timeout. Their results are exact: every number is read as a decimal and
kept to 38 digits, 9 after the point. The rules for awkward values:

- NULL stays NULL (a metric with no data for the date writes a row with NULL output);
- a zero denominator is written as 0, and the output as the SQL gives it (SAFE_DIVIDE
  gives NULL);
- NaN or +/-Infinity cannot be held in a NUMERIC: the metric fails
  (SQL_EXECUTION_ERROR) and writes no row;
- digits after the 9th decimal place are rounded half away from zero; more than 29
  digits before the point fail the metric.

Results go to each metric's ``target_table``, grouped by table, one transaction per
table: a merge on (metric_id, partition_dt), so running the same metric for the same
date again replaces its row. Every selected metric gets one reconciliation record,
whether it passed or failed, with the error category and message when it failed; a
failure of the whole run (e.g. the partition info table is missing) still writes a
failure record for every selected metric.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.registry import open_warehouse
from deltaflow.errors import Code, DeltaFlowError, MetricError, PartitionValidationError
from deltaflow.metrics.definitions import Metric
from deltaflow.metrics.dialect import transpile
from deltaflow.metrics.placeholders import fill, partition_tables

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import ConnectionBase
    from deltaflow.config.models import MetricsStep, Pipeline
    from deltaflow.connectors.protocol import RunResources, Warehouse

log = logging.getLogger("deltaflow.metrics")

PLACES = decimal.Decimal(1).scaleb(-9)
LIMIT = decimal.Decimal(10) ** 29


@dataclass
class Outcome:
    metric: Metric
    status: str  # Passed | Failed
    row: dict[str, Any] | None = None
    partition_date: dt.date | None = None
    error_category: str | None = None
    error_message: str | None = None


@dataclass
class Run:
    conn: ConnectionBase
    resources: RunResources
    run_date: dt.date
    partition_info_table: str | None
    recon_table: str
    env: str = "DEV"
    dialect: str = "bigquery"
    timeout: float = 180.0
    workers: int = 4
    warehouse: Warehouse = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.warehouse = open_warehouse(self.conn, self.resources)

    @property
    def target_dialect(self) -> str:
        return self.warehouse.dialect

    def query(self, sql: str) -> pa.Table:
        """Run one query, stopped by the warehouse after ``timeout`` seconds."""
        return self.warehouse.query(sql, self.timeout)

    def transpile(self, sql: str) -> str:
        """The metric's SQL in the warehouse's dialect, giving BigQuery's answers there
        (``deltaflow.metrics.dialect``); a function the warehouse would answer
        differently is refused (``RefusedFunctionError``)."""
        return transpile(sql, self.target_dialect, self.dialect)


def run_metrics(run: Run, metrics: list[Metric]) -> list[Outcome]:
    """Run the metrics, write their results and their reconciliation records."""
    try:
        latest = _partition_dates(run, metrics)
    except DeltaFlowError as exc:
        outcomes = [Outcome(m, "Failed", None, None, exc.code, exc.message) for m in metrics]
        _write_recon(run, outcomes)
        return outcomes
    with ThreadPoolExecutor(max(1, run.workers), thread_name_prefix="deltaflow-metric") as pool:
        futures = [(m, pool.submit(_one, run, m, latest)) for m in metrics]
        outcomes = []
        for metric, future in futures:
            try:  # the warehouse stops a query at the timeout; this is the backstop
                outcomes.append(future.result(timeout=run.timeout + 30))
            except FutureTimeout:
                message = f"did not finish in {run.timeout:.0f} s"
                outcomes.append(
                    Outcome(metric, "Failed", None, None, "SQL_EXECUTION_ERROR", message)
                )
    _write_results(run, outcomes)
    _write_recon(run, outcomes)
    return outcomes


def _partition_dates(run: Run, metrics: list[Metric]) -> dict[str, dt.date | None]:
    """The latest partition date of every table a {partition_info} filters, from the
    partition info table (checked to exist, with its columns, before any metric runs)."""
    tables = sorted({t for m in metrics for t in partition_tables(m.sql, run.dialect)})
    if not tables:
        return {}
    if not run.partition_info_table:
        raise PartitionValidationError(
            "metrics use {partition_info} but no partition info table is given",
            hint="pass --partition-info-table (columns table_name, partition_dt)",
        )
    name = ".".join(run.warehouse.quote(p) for p in run.partition_info_table.split("."))
    try:
        found = run.query(f"SELECT * FROM {name} LIMIT 0").schema.names
    except Exception as exc:
        raise PartitionValidationError(
            f"partition info table {run.partition_info_table} cannot be read: {exc}",
            hint="create it with columns table_name and partition_dt, or name another",
        ) from None
    missing = {"table_name", "partition_dt"} - set(found)
    if missing:
        raise PartitionValidationError(
            f"partition info table {run.partition_info_table} has no column "
            f"{', '.join(sorted(missing))}",
            hint="it needs table_name (the table as the SQL names it) and partition_dt",
        )
    rows = run.query(
        f"SELECT table_name, max(partition_dt) AS latest FROM {name} GROUP BY table_name"
    ).to_pylist()
    known = {str(r["table_name"]): r["latest"] for r in rows}
    return {t: known.get(t) or known.get(t.split(".")[-1]) for t in tables}


def _one(run: Run, metric: Metric, latest: dict[str, dt.date | None]) -> Outcome:
    try:
        tables = partition_tables(metric.sql, run.dialect)
        dates = []
        for table in tables:
            day = latest.get(table)
            if day is None:
                raise PartitionValidationError(
                    f"table {table} is not in partition info table {run.partition_info_table}",
                    hint="add its latest partition date there",
                )
            dates.append(day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)))
        sql = run.transpile(fill(metric.sql, run.run_date, dates))
        try:
            rows = run.query(sql).to_pylist()
        except Exception as exc:
            raise MetricError(
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}", code=Code.SQL_EXECUTION_ERROR
            ) from None
        if len(rows) != 1:
            raise MetricError(f"returned {len(rows)} rows, not one", code=Code.SQL_EXECUTION_ERROR)
        row = _row(metric, rows[0], run)
        return Outcome(metric, "Passed", row, dates[0] if dates else run.run_date)
    except DeltaFlowError as exc:
        log.warning("metric %s failed: [%s] %s", metric.metric_id, exc.code, exc.message)
        return Outcome(metric, "Failed", None, None, exc.code, exc.message)
    except Exception as exc:
        return Outcome(
            metric, "Failed", None, None, "UNKNOWN_ERROR", f"{type(exc).__name__}: {exc}"
        )


def exact(value: Any, column: str) -> decimal.Decimal | None:
    """A result value as a decimal of 38 digits, 9 after the point (see the module)."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise MetricError(
                f"{column} is {value}, which a NUMERIC cannot hold", code=Code.SQL_EXECUTION_ERROR
            )
        number = decimal.Decimal(repr(value))  # the shortest text that is the float
    else:
        try:
            number = decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            raise MetricError(
                f"{column} is {value!r}, not a number", code=Code.SQL_EXECUTION_ERROR
            ) from None
    if not number.is_finite():
        raise MetricError(
            f"{column} is {number}, which a NUMERIC cannot hold", code=Code.SQL_EXECUTION_ERROR
        )
    if abs(number) >= LIMIT:
        raise MetricError(
            f"{column} has more than 29 digits before the point", code=Code.SQL_EXECUTION_ERROR
        )
    with decimal.localcontext() as context:
        context.prec = 60
        rounded = number.quantize(PLACES, rounding=decimal.ROUND_HALF_UP)
    if abs(rounded) >= LIMIT:
        raise MetricError(
            f"{column} has more than 29 digits before the point", code=Code.SQL_EXECUTION_ERROR
        )
    return rounded


def _row(metric: Metric, values: dict[str, Any], run: Run) -> dict[str, Any]:
    day = values.get("business_data_date")
    if isinstance(day, dt.datetime):
        day = day.date()
    elif day is not None and not isinstance(day, dt.date):
        day = dt.date.fromisoformat(str(day)[:10])
    return {
        "metric_id": metric.metric_id,
        "metric_name": metric.metric_name,
        "metric_type": metric.metric_type,
        "numerator_value": exact(values.get("numerator_value"), "numerator_value"),
        "denominator_value": exact(values.get("denominator_value"), "denominator_value"),
        "metric_output": exact(values.get("metric_output"), "metric_output"),
        "business_data_date": day,
        "partition_dt": run.run_date,
        "pipeline_execution_ts": dt.datetime.now(dt.UTC),
    }


RESULT_TYPES = {
    "numerator_value": "decimal",
    "denominator_value": "decimal",
    "metric_output": "decimal",
    "business_data_date": "date",
    "partition_dt": "date",
    "pipeline_execution_ts": "timestamp",
}


def _write_results(run: Run, outcomes: list[Outcome]) -> None:
    """One merge per target table on (metric_id, partition_dt): a rerun replaces."""
    from deltaflow.connectors import append_rows

    by_table: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.row is not None:
            by_table.setdefault(_local(outcome.metric.target_table), []).append(outcome)
    for table, group in by_table.items():
        try:
            append_rows(
                run.conn,
                run.resources,
                table,
                [o.row for o in group if o.row is not None],
                RESULT_TYPES,
                key=("metric_id", "partition_dt"),
            )
        except DeltaFlowError as exc:
            for o in group:
                o.status, o.error_category = "Failed", "BIGQUERY_WRITE_ERROR"
                o.error_message = f"writing {table} failed: {exc.message}"


def _local(table: str) -> str:
    """A target table as the warehouse names it: project.dataset.table -> dataset.table."""
    parts = table.split(".")
    return ".".join(parts[-2:])


RECON_TYPES = {
    "load_ts": "timestamp",
    "schdld_dt": "date",
    "schdld_yr": "int",
}


def _write_recon(run: Run, outcomes: list[Outcome]) -> None:
    from deltaflow.connectors import append_rows

    now = dt.datetime.now(dt.UTC)
    rows = []
    for o in outcomes:
        rows.append(
            {
                "module_id": "103",
                "module_type_nm": "Metrics",
                "source_server_nm": f"{run.env} {run.warehouse.kind}",
                "target_server_nm": f"{run.env} {run.warehouse.kind}",
                "rcncln_exact_pass_in": o.status,
                "latest_source_parttn_dt": o.partition_date.isoformat()
                if o.partition_date
                else None,
                "latest_target_parttn_dt": run.run_date.isoformat()
                if o.status == "Passed"
                else None,
                "load_ts": now,
                "schdld_dt": run.run_date,
                "source_system_id": o.metric.metric_id,
                "schdld_yr": run.run_date.year,
                "Job_Name": o.metric.metric_name,
                "error_category": o.error_category,
                "error_message": o.error_message,
            }
        )
    try:
        append_rows(run.conn, run.resources, _local(run.recon_table), rows, RECON_TYPES)
    except DeltaFlowError as exc:
        raise MetricError(
            f"writing the reconciliation records to {run.recon_table} failed: {exc.message}",
            code=Code.RECON_CREATION_ERROR,
        ) from None


def run_step(step: MetricsStep, pipeline: Pipeline, resources: RunResources) -> dict[str, Any]:
    """A pipeline's ``metrics`` step: its details (every metric's outcome); raises when
    a metric failed, after every metric ran and was recorded."""
    from deltaflow.metrics import definitions

    config = step.config
    if not config.startswith("gs://"):
        config = str(resources.resolve(config))
    metrics = definitions.select(definitions.load(config, step.dialect), list(step.dependencies))
    day = dt.date.fromisoformat(step.run_date) if step.run_date else dt.datetime.now(dt.UTC).date()
    conn = pipeline.connections[step.connection]
    run = Run(
        conn,
        resources,
        day,
        step.partition_info_table,
        step.recon_table,
        "DEV",
        step.dialect,
        step.timeout,
        step.workers,
    )
    outcomes = run_metrics(run, metrics)
    details = {
        "run_date": day.isoformat(),
        "metrics": [
            {
                "metric_id": o.metric.metric_id,
                "status": o.status,
                "metric_output": None if not o.row else str(o.row["metric_output"]),
                "error_category": o.error_category,
                "error_message": o.error_message,
            }
            for o in outcomes
        ],
    }
    failed = [o for o in outcomes if o.status == "Failed"]
    if failed:
        error = MetricError(
            f"{len(failed)} of {len(outcomes)} metrics failed: "
            + ", ".join(f"{o.metric.metric_id} ({o.error_category})" for o in failed),
            hint="see each metric's record in the recon table; the others were written",
            code=Code.PIPELINE_EXECUTION_ERROR,
        )
        error.details = details  # type: ignore[attr-defined]
        raise error
    return details
