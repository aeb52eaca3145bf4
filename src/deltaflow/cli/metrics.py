"""``deltaflow metrics``: validate a metric definitions file; run metrics for a date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deltaflow.cli._render import err, fail, out, setup_logging, status, table
from deltaflow.errors import DeltaFlowError

if TYPE_CHECKING:
    from deltaflow.metrics.engine import Outcome

app = typer.Typer(
    help="Business metrics defined as SQL in JSON: validate a definitions file, or run "
    "metrics for a date with their reconciliation records.",
    no_args_is_help=True,
)

MetricsConfig = Annotated[
    str, typer.Option("--config", help="Metric definitions (JSON), a path or gs://bucket/key.")
]


@app.command("validate")
def metrics_validate(
    config: MetricsConfig,
    dialect: Annotated[str, typer.Option(help="SQL dialect the metrics are written in.")] = (
        "bigquery"
    ),
) -> None:
    """Check a definitions file and report every problem at once (exit 1 if any)."""
    from deltaflow.ops.metrics import validate_definitions

    try:
        report = validate_definitions(config, dialect)
    except DeltaFlowError as exc:
        raise fail(exc) from None
    for problem in report.problems:
        out.print(escape(f"{config}: {problem}"), soft_wrap=True)
    if report.problems:
        err.print(f"{len(report.problems)} problem(s) in {config}")
        raise typer.Exit(1)
    out.print(f"{config}: {report.metrics} metrics, valid")


@app.command("run")
def metrics_run(
    config: MetricsConfig,
    run_date: Annotated[
        dt.datetime,
        typer.Option("--run-date", formats=["%Y-%m-%d"], help="The date metrics are run for."),
    ],
    env: Annotated[
        str, typer.Option(help="Environment: DEV, BLD or PRD; selects the connection profile.")
    ] = "DEV",
    dependencies: Annotated[
        str | None,
        typer.Option(help="Dependency groups to run, comma-separated \\[default: all]."),
    ] = None,
    partition_info_table: Annotated[
        str | None, typer.Option(help="Table of latest partition dates (table_name, partition_dt).")
    ] = None,
    recon_table: Annotated[
        str, typer.Option(help="Table the reconciliation records are appended to.")
    ] = "metrics_recon",
    profiles: Annotated[
        Path, typer.Option(help="Connection profiles per environment (YAML).")
    ] = Path("profiles.yml"),
    dialect: Annotated[str, typer.Option(help="SQL dialect the metrics are written in.")] = (
        "bigquery"
    ),
    timeout: Annotated[float, typer.Option(min=1, help="Seconds each metric may take.")] = 180.0,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Metrics run at once.")] = 4,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run the metrics of the selected dependency groups for a date: results to their
    target tables (a rerun replaces them), one reconciliation record per metric.

    Exits 1 when any metric failed; the others still ran and were written.
    """
    from deltaflow.ops import metrics as ops

    setup_logging(verbose)
    if env not in ops.ENVIRONMENTS:
        err.print(f"error: --env {env}: use DEV, BLD or PRD")
        raise typer.Exit(2)
    request = ops.MetricsRunRequest(
        config,
        run_date.date(),
        env,
        [d for d in (dependencies or "").split(",") if d],
        partition_info_table,
        recon_table,
        profiles,
        dialect,
        timeout,
        workers,
    )
    try:
        outcomes = ops.run(request)
    except DeltaFlowError as exc:
        raise fail(exc) from None
    _print_outcomes(run_date.date(), outcomes)
    if any(o.status == "Failed" for o in outcomes):
        raise typer.Exit(1)


def _print_outcomes(day: dt.date, outcomes: list[Outcome]) -> None:
    """One row per metric: its status, its output or its error."""
    listing = table(f"Metrics for {day}", "metric", "status", "output>", "error")
    for o in outcomes:
        output = o.row.get("metric_output") if o.row else None
        error = f"[{o.error_category}] {o.error_message}" if o.error_category else ""
        listing.add_row(
            escape(o.metric.metric_id),
            status("succeeded" if o.status == "Passed" else "failed"),
            "" if output is None else str(output),
            escape(error),
        )
    out.print(listing)
