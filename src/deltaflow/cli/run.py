"""``deltaflow run`` and ``deltaflow check``: run a pipeline, or only its checks."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from deltaflow.cli._options import ConfigsOption, MetadataOption, PipelineArgument, VarOption
from deltaflow.cli._render import (
    err,
    fail,
    n,
    out,
    print_checks,
    print_step_details,
    seconds,
    setup_logging,
    status,
    table,
)
from deltaflow.errors import DeltaFlowError, NoQualityStepError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from deltaflow.orchestration.runner import RunResult


def run(
    pipeline: Annotated[
        str,
        typer.Argument(
            help="Pipeline file, or pipeline id: 'orders' finds **/orders.yml under --configs."
        ),
    ],
    var: VarOption = None,
    configs: ConfigsOption = None,
    step: Annotated[
        list[str] | None, typer.Option("--step", help="Run only this step; repeatable.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant id, the {tenant_id} variable.")] = "default",
    run_date: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Date of the run, the {date} variable \\[default: today, UTC].",
            show_default=False,
        ),
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="Incremental steps: ignore the watermark, reload everything (the table is "
            "replaced and a new watermark committed with it).",
        ),
    ] = False,
    start: Annotated[
        str | None,
        typer.Option(
            help="Incremental steps: read from this cursor value (inclusive), e.g. "
            "2024-05-01T00:00:00+00:00 or 1000; a backfill, the watermark never moves back.",
            show_default=False,
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            help="Incremental steps: read up to this cursor value (exclusive) "
            "\\[default: now minus safety_lag].",
            show_default=False,
        ),
    ] = None,
    incremental_cursor: Annotated[
        str | None,
        typer.Option(help="Incremental steps: use this cursor column.", show_default=False),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Read at most N rows from each source (a sample; incremental steps keep "
            "their watermark).",
            show_default=False,
        ),
    ] = None,
    test: Annotated[
        bool, typer.Option("--test", help="A trial run on 100 rows per source: --limit 100.")
    ] = False,
    metadata: MetadataOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars; the summary is printed.")
    ] = False,
    silent: Annotated[
        bool, typer.Option("--silent", help="Print nothing unless the run fails.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run a pipeline: every step in order, recorded in the run store."""
    import dataclasses

    from deltaflow.config.variables import parse_assignments
    from deltaflow.ops import run as ops

    setup_logging(verbose)
    request = ops.RunRequest(
        pipeline,
        configs=configs,
        steps=step or [],
        tenant=tenant,
        run_date=run_date.date() if run_date else None,
        full_refresh=full_refresh,
        start=start,
        end=end,
        incremental_cursor=incremental_cursor,
        limit=limit,
        test=test,
        metadata=metadata,
    )
    conflict = request.conflict()
    if conflict:
        err.print(f"error: {conflict}")
        raise typer.Exit(2)
    try:
        request = dataclasses.replace(request, variables=parse_assignments(var or []))
        prepared = ops.prepare(request)
        with _progress(quiet or silent) as observer:
            result = ops.execute(prepared, observer)
    except DeltaFlowError as exc:
        raise fail(exc) from None
    if not silent:
        _print_result(result)
    if result.error is not None:
        raise fail(result.error)


def check(
    pipeline: PipelineArgument,
    var: VarOption = None,
    configs: ConfigsOption = None,
    step: Annotated[
        list[str] | None, typer.Option("--step", help="Only this quality step; repeatable.")
    ] = None,
    metadata: MetadataOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run only the pipeline's quality checks (its 'quality' steps), recorded as a run.

    Exits 1 when a critical check fails or cannot run; warnings are printed and stored.
    """
    from deltaflow.config.variables import parse_assignments
    from deltaflow.ops import run as ops

    setup_logging(verbose)
    try:
        variables = parse_assignments(var or [])
        request = ops.CheckRequest(pipeline, variables, configs, step or [], metadata)
        result = ops.check(request)
    except NoQualityStepError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    except DeltaFlowError as exc:
        raise fail(exc) from None
    if not quiet:
        print_checks(result.steps)
    if result.error is not None:
        raise fail(result.error)


class _ProgressObserver:
    """Draws one rich progress bar per stream: rows, rows/s, elapsed."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def stream_started(self, stream: str, total_rows: int | None) -> None:
        self.tasks[stream] = self.progress.add_task(stream, total=total_rows)

    def rows_read(self, stream: str, rows: int) -> None:
        self.progress.advance(self.tasks[stream], rows)

    def stream_finished(self, stream: str) -> None:
        task = self.tasks[stream]
        done = self.progress.tasks[task].completed
        self.progress.update(task, total=done, completed=done)


class _progress:
    """Progress bars on a terminal's standard error while a run reads its sources."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and err.is_terminal
        self.progress: Progress | None = None

    def __enter__(self) -> _ProgressObserver | None:
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            _speed_column(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.progress.start()
        return _ProgressObserver(self.progress)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _speed_column() -> Any:
    """A progress column of rows per second."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:>10,.0f} rows/s")

    return SpeedColumn()


def _print_result(result: RunResult) -> None:
    """One row per step of the run, then what the steps did beyond it."""
    steps = table(
        f"Run {result.run.run_id} of {result.run.pipeline_id}: {result.run.status}",
        "step",
        "stream",
        "mode",
        "status",
        "rows read>",
        "rows loaded>",
        "inserted>",
        "updated>",
        "table rows>",
        "seconds>",
        "rows/s>",
    )
    for s in result.steps:
        rate = int(s.rows_read / s.duration_s) if s.rows_read and s.duration_s else None
        steps.add_row(
            escape(s.step_id),
            escape(s.stream or ""),
            s.write_mode or "",
            status(s.status),
            n(s.rows_read),
            n(s.rows_loaded),
            n(s.details.get("inserted")),
            n(s.details.get("updated")),
            n(s.table_rows),
            seconds(s.duration_s),
            n(rate),
        )
    out.print(steps)
    print_step_details(result.steps)
