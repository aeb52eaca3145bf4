"""``deltaflow runs``: recent runs, or one run with its steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deltaflow.cli._options import MetadataOption
from deltaflow.cli._render import err, n, out, print_step_details, seconds, status, table

if TYPE_CHECKING:
    from deltaflow.metadata.store import RunRecord, StepRecord

app = typer.Typer(help="List recent runs, or show one with its steps.", invoke_without_command=True)


@app.callback()
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many runs to list.")] = 20,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline id.")] = None,
    metadata: MetadataOption = None,
) -> None:
    """List recent runs."""
    if ctx.invoked_subcommand is not None:
        return
    from deltaflow.ops.runs import list_runs

    _print_runs(list_runs(metadata, limit, pipeline))


def _print_runs(records: list[RunRecord]) -> None:
    """One row per run."""
    listing = table(
        "Recent runs",
        "run id",
        "pipeline",
        "tenant",
        "status",
        "started",
        "seconds>",
        "rows loaded>",
        "error",
    )
    for r in records:
        listing.add_row(
            r.run_id,
            escape(r.pipeline_id),
            escape(r.tenant_id),
            status(r.status),
            r.started_at[:19].replace("T", " "),
            seconds(r.duration_s),
            n(r.rows_loaded),
            r.error_code or "",
        )
    out.print(listing)


@app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    metadata: MetadataOption = None,
) -> None:
    """Show one run with its steps."""
    from deltaflow.errors import RunNotFoundError
    from deltaflow.ops.runs import show_run

    try:
        detail = show_run(run_id, metadata)
    except RunNotFoundError as exc:
        err.print(f"{exc.message}; {exc.hint}")
        raise typer.Exit(1) from None
    record = detail.run
    out.print(
        f"run        {record.run_id}\npipeline   {record.pipeline_id}\n"
        f"tenant     {record.tenant_id}\nstatus     {status(record.status)}\n"
        f"started    {record.started_at}\nended      {record.ended_at or ''}\n"
        f"duration   {record.duration_s or 0:.2f} s\n"
        f"rows       {n(record.rows_read)} read, {n(record.rows_loaded)} loaded"
    )
    if record.error_code:
        out.print(
            f"error      [{record.error_code}] {record.error_message}", markup=False, soft_wrap=True
        )
    _print_steps(detail.steps)
    print_step_details(detail.steps)


def _print_steps(steps: list[StepRecord]) -> None:
    """One row per step of a run."""
    listing = table(
        "Steps",
        "step",
        "type",
        "stream",
        "destination",
        "mode",
        "status",
        "rows read>",
        "rows loaded>",
        "seconds>",
        "error",
    )
    for s in steps:
        error = escape(f"[{s.error_code}] {s.error_message}") if s.error_code else ""
        listing.add_row(
            escape(s.step_id),
            s.step_type,
            escape(s.stream or ""),
            escape(s.destination or ""),
            s.write_mode or "",
            status(s.status),
            n(s.rows_read),
            n(s.rows_loaded),
            seconds(s.duration_s),
            error,
        )
    out.print(listing)
