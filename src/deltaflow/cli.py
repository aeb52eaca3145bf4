"""The ``deltaflow`` command line: thin, it renders what the library does."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deltaflow import __version__
from deltaflow.config.secrets import redact
from deltaflow.errors import ConfigError, DeltaFlowError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from deltaflow.metadata.store import RunRecord, StepRecord
    from deltaflow.orchestration.runner import RunResult

app = typer.Typer(
    name="deltaflow",
    help="DeltaFlow: config-as-code data pipelines on an Arrow data plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
state_app = typer.Typer(
    help="Incremental state (watermarks) of a pipeline's steps: show, set, reset.",
    no_args_is_help=True,
)
runs_app = typer.Typer(
    help="List recent runs, or show one with its steps.", invoke_without_command=True
)
quarantine_app = typer.Typer(
    help="Rows kept out of a load, with their reasons: list, show, replay, purge "
    "(DuckDB, PostgreSQL and BigQuery destinations).",
    no_args_is_help=True,
)
app.add_typer(runs_app, name="runs")
app.add_typer(state_app, name="state")
metrics_app = typer.Typer(
    help="Business metrics defined as SQL in JSON: validate a definitions file, or run "
    "metrics for a date with their reconciliation records.",
    no_args_is_help=True,
)
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(metrics_app, name="metrics")

# Piped output is not cut to 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

PipelineArgument = Annotated[
    str, typer.Argument(help="Pipeline file, or pipeline id (looked up under --configs).")
]
ConfigsOption = Annotated[
    Path | None,
    typer.Option(
        help="Where pipeline ids are looked up \\[default: ./configs, else .].", show_default=False
    ),
]
VarOption = Annotated[
    list[str] | None,
    typer.Option("--var", help="Set a variable, NAME=VALUE; repeatable; wins over the file."),
]
MetadataOption = Annotated[
    Path | None,
    typer.Option(
        "--metadata",
        envvar="DELTAFLOW_METADATA",
        help="Run store file \\[default: .deltaflow/runs.db].",
        show_default=False,
    ),
]


def _store(path: Path | None) -> Any:
    from deltaflow.metadata.store import RunStore, default_store_path

    return RunStore(path or default_store_path())


def _fail(error: DeltaFlowError, code: int = 1) -> typer.Exit:
    message = escape(f"[{error.code}] {redact(str(error))}")
    err.print(f"[bold red]error[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
    class RedactingFormatter(logging.Formatter):
        """Masks secrets in the whole formatted record, tracebacks included."""

        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("deltaflow")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


# --------------------------------------------------------------------------- run


@app.command()
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run a pipeline: every step in order, recorded in the run store."""
    from deltaflow.config.loader import RunContext, load_pipeline
    from deltaflow.config.options import SyncOptions
    from deltaflow.config.variables import parse_assignments
    from deltaflow.orchestration.runner import run_pipeline

    _setup_logging(verbose)
    if full_refresh and start:
        err.print("error: --full-refresh and --start contradict each other; pass one")
        raise typer.Exit(2)
    context = RunContext(
        tenant_id=tenant,
        run_date=run_date.date() if run_date else None,
        sync=SyncOptions(
            full_refresh, start, end, incremental_cursor, limit=100 if test and not limit else limit
        ),
    )
    try:
        loaded = load_pipeline(
            pipeline, configs=configs, cli_vars=parse_assignments(var or []), context=context
        )
        with _progress(quiet) as observer:
            result = run_pipeline(
                loaded,
                context=context,
                store=_store(metadata),
                observer=observer,
                only_steps=step or [],
            )
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    if not quiet:
        _print_result(result)
    if result.error is not None:
        raise _fail(result.error)


@app.command()
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
    from deltaflow.config.loader import RunContext, load_pipeline
    from deltaflow.config.variables import parse_assignments
    from deltaflow.orchestration.runner import run_pipeline

    _setup_logging(verbose)
    context = RunContext()
    try:
        loaded = load_pipeline(
            pipeline, configs=configs, cli_vars=parse_assignments(var or []), context=context
        )
        every = [s.step_id for s in loaded.pipeline.steps if s.type == "quality"]
        quality = [s for s in every if s in step] if step else every
        if not quality:
            named = f" named {', '.join(step)}" if step else ""
            err.print(
                f"pipeline {loaded.pipeline.pipeline_id} has no quality step{named} "
                f"(quality steps: {', '.join(every) or 'none'})"
            )
            raise typer.Exit(2)
        result = run_pipeline(loaded, context=context, store=_store(metadata), only_steps=quality)
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    if not quiet:
        _print_checks(result.steps)
    if result.error is not None:
        raise _fail(result.error)


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
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:>10,.0f} rows/s")

    return SpeedColumn()


def _print_result(result: RunResult) -> None:
    table = _table(
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
        table.add_row(
            escape(s.step_id),
            escape(s.stream or ""),
            s.write_mode or "",
            _status(s.status),
            _n(s.rows_read),
            _n(s.rows_loaded),
            _n(s.details.get("inserted")),
            _n(s.details.get("updated")),
            _n(s.table_rows),
            f"{s.duration_s:.2f}" if s.duration_s is not None else "",
            _n(rate),
        )
    out.print(table)
    _print_incremental(result.steps)
    _print_load_notes(result.steps)
    _print_checks(result.steps)


def _print_load_notes(steps: list[StepRecord]) -> None:
    """What a load did beyond its rows: quarantined rows, renamed columns, splits already
    loaded by an earlier run, BigQuery jobs and bytes."""
    for s in steps:
        d = s.details
        notes = []
        if d.get("quarantined"):
            notes.append(f"{d['quarantined']:,} rows quarantined in {d.get('quarantine_table')}")
        if d.get("renamed_columns"):
            renamed = ", ".join(f"{a} -> {b}" for a, b in d["renamed_columns"].items())
            notes.append(f"columns renamed: {renamed}")
        if d.get("splits"):
            notes.append(
                f"splits {d['splits']['total']}, of which loaded by an earlier run "
                f"{d['splits']['already_loaded']}"
            )
        if "query_jobs" in d or "load_jobs" in d:
            notes.append(
                f"BigQuery: {d.get('load_jobs', 0)} load jobs, {d.get('query_jobs', 0)} query "
                f"jobs, {_bytes(d.get('bytes_processed', 0))} processed, "
                f"{_bytes(d.get('bytes_billed', 0))} billed"
            )
        if notes:
            out.print(escape(f"{s.step_id}/{s.stream or ''}: " + "; ".join(notes)), soft_wrap=True)


def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TB"


def _print_incremental(steps: list[StepRecord]) -> None:
    """One line per incremental stream: the window, why, NULL cursors, the watermark."""
    for s in steps:
        plans = s.details.get("incremental")
        if not plans:
            continue
        by_stream = {s.stream or s.step_id: plans} if "mode" in plans else plans
        for stream, plan in by_stream.items():
            out.print(escape(f"{s.step_id}/{stream}: {_incremental_line(plan)}"), soft_wrap=True)


def _incremental_line(plan: dict[str, Any]) -> str:
    window = f"[{plan.get('start') or 'beginning'}, {plan.get('end') or 'no end'})"
    parts = [f"{plan['mode']} on {plan['cursor']} {window}: {plan['reason']}"]
    parts.append(f"NULL cursors {plan.get('null_cursor_rows', 0):,}")
    if plan.get("already_loaded"):
        parts.append(f"already loaded at the watermark {plan['already_loaded']:,}")
    parts.append(f"watermark {plan.get('watermark') or 'none'}")
    return "; ".join(parts)


def _table(title: str, *columns: str) -> Table:
    """A table with these columns; a trailing '>' right-aligns a column."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        right = column.endswith(">")
        table.add_column(column.rstrip(">"), justify="right" if right else "left")
    return table


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


# --------------------------------------------------------------------------- validate, schema


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Pipeline files to check.")],
    var: Annotated[
        list[str] | None, typer.Option("--var", help="Variables to assume, NAME=VALUE.")
    ] = None,
) -> None:
    """Check pipeline files without running them; exit 1 if any has a problem."""
    from deltaflow.config.loader import validate_file
    from deltaflow.config.variables import parse_assignments

    try:
        cli_vars = parse_assignments(var or [])
    except DeltaFlowError as exc:
        raise _fail(exc, 2) from None
    problems = 0
    for path in paths:
        found = validate_file(path, cli_vars)
        problems += len(found)
        for diagnostic in found:
            out.print(str(diagnostic), markup=False, soft_wrap=True)
        if not found:
            out.print(f"{path}: ok", markup=False)
    if problems:
        noun = "problem" if problems == 1 else "problems"
        err.print(f"{problems} {noun} in {len(paths)} file(s)")
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the pipeline format (for editor completion)."""
    from deltaflow.config.models import Pipeline

    document = Pipeline.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "DeltaFlow pipeline"
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


# --------------------------------------------------------------------------- runs


@runs_app.callback()
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many runs to list.")] = 20,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline id.")] = None,
    metadata: MetadataOption = None,
) -> None:
    """List recent runs."""
    if ctx.invoked_subcommand is not None:
        return
    records: list[RunRecord] = _store(metadata).runs(limit, pipeline)
    table = _table(
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
        table.add_row(
            r.run_id,
            escape(r.pipeline_id),
            escape(r.tenant_id),
            _status(r.status),
            r.started_at[:19].replace("T", " "),
            f"{r.duration_s:.2f}" if r.duration_s is not None else "",
            _n(r.rows_loaded),
            r.error_code or "",
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    metadata: MetadataOption = None,
) -> None:
    """Show one run with its steps."""
    store = _store(metadata)
    record = store.run(run_id)
    if record is None:
        err.print(
            f"no run '{run_id}' in {store.path} (or the prefix is ambiguous); "
            "'deltaflow runs' lists recent runs"
        )
        raise typer.Exit(1)
    steps: list[StepRecord] = store.steps(record.run_id)
    out.print(
        f"run        {record.run_id}\npipeline   {record.pipeline_id}\n"
        f"tenant     {record.tenant_id}\nstatus     {_status(record.status)}\n"
        f"started    {record.started_at}\nended      {record.ended_at or ''}\n"
        f"duration   {record.duration_s or 0:.2f} s\n"
        f"rows       {_n(record.rows_read)} read, {_n(record.rows_loaded)} loaded"
    )
    if record.error_code:
        out.print(
            f"error      [{record.error_code}] {record.error_message}", markup=False, soft_wrap=True
        )
    table = _table(
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
        table.add_row(
            escape(s.step_id),
            s.step_type,
            escape(s.stream or ""),
            escape(s.destination or ""),
            s.write_mode or "",
            _status(s.status),
            _n(s.rows_read),
            _n(s.rows_loaded),
            f"{s.duration_s:.2f}" if s.duration_s is not None else "",
            error,
        )
    out.print(table)
    _print_incremental(steps)
    _print_load_notes(steps)
    _print_checks(steps)


def _print_checks(steps: list[StepRecord]) -> None:
    """Each quality step's check results and its table's quality score."""
    for s in steps:
        results = s.details.get("checks")
        if not results:
            continue
        table = _table(
            f"{s.step_id}: {s.details.get('table')} — quality score "
            f"{s.details.get('quality_score')}",
            "check",
            "severity",
            "status",
            "failing>",
            "checked>",
            "observed",
            "message",
        )
        for r in results:
            observed = r.get("observed")
            table.add_row(
                escape(r["name"]),
                r["severity"],
                _status(r["status"]),
                _n(r.get("failing_rows")),
                _n(r.get("rows_checked")),
                escape("" if observed is None else str(observed))[:40],
                escape(r.get("message") or ""),
            )
        out.print(table)


# --------------------------------------------------------------------------- state


def _loaded(pipeline: str, configs: Path | None) -> Any:
    from deltaflow.config.loader import load_pipeline

    return load_pipeline(pipeline, configs=configs)


@state_app.command("show")
def state_show(
    pipeline: PipelineArgument,
    step: Annotated[str | None, typer.Argument(help="Only this step.")] = None,
    configs: ConfigsOption = None,
) -> None:
    """Show the watermark of each incremental step, as committed in its destination."""
    from deltaflow.sync import state

    try:
        found = state.show(_loaded(pipeline, configs), [step] if step else [])
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    table = _table(
        "Incremental state",
        "step",
        "destination",
        "stream",
        "cursor",
        "watermark",
        "rows at watermark>",
        "run",
        "updated",
    )
    for entry in found:
        if not entry.records:
            table.add_row(
                escape(entry.step_id), escape(entry.destination), "", "", "none yet", "", "", ""
            )
        for r in entry.records:
            table.add_row(
                escape(entry.step_id),
                escape(entry.destination),
                escape(r.key.rsplit("/", 1)[-1]),
                escape(r.cursor),
                r.watermark or "",
                _n(len(r.boundary)),
                escape(r.run_id),
                r.updated_at[:19].replace("T", " "),
            )
    out.print(table)


@state_app.command("set")
def state_set(
    pipeline: PipelineArgument,
    step: Annotated[str, typer.Argument(help="The incremental step.")],
    value: Annotated[
        str,
        typer.Option(
            "--value",
            help="The new watermark: the next run reads from it (inclusive). An ISO 8601 "
            "time (without an offset it is in the step's timezone) or an integer.",
        ),
    ],
    stream: Annotated[
        str | None,
        typer.Option(help="The stream, when the step has several sources.", show_default=False),
    ] = None,
    configs: ConfigsOption = None,
) -> None:
    """Set a step's watermark, e.g. to re-read from a point in time."""
    from deltaflow.sync import state

    try:
        record = state.set_watermark(_loaded(pipeline, configs), step, value, stream)
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    out.print(f"{escape(step)}: watermark set to {record.watermark}")


@state_app.command("reset")
def state_reset(
    pipeline: PipelineArgument,
    step: Annotated[str | None, typer.Argument(help="Only this step.")] = None,
    configs: ConfigsOption = None,
) -> None:
    """Forget the watermark: the next run starts from MAX(cursor) of the destination, or
    by the on_empty rule when it is empty (use 'run --full-refresh' to reload)."""
    from deltaflow.sync import state

    try:
        removed = state.reset(_loaded(pipeline, configs), [step] if step else [])
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    out.print(f"removed {removed} state record(s)")


# --------------------------------------------------------------------------- reconcile


@app.command()
def reconcile(
    pipeline: PipelineArgument,
    step: Annotated[str, typer.Option("--step", help="The sync step whose tables to compare.")],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Key column; repeatable \\[default: the step's primary_key]."),
    ] = None,
    buckets: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Hashed key ranges compared first.")
    ] = 1024,
    partition_column: Annotated[
        str | None,
        typer.Option(help="Date column whose latest value goes into the record."),
    ] = None,
    recon_table: Annotated[
        str,
        typer.Option(help="Table in the destination's warehouse the record is appended to."),
    ] = "_deltaflow_reconciliation",
    run_date: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"], help="Scheduled date \\[default: today, UTC].", show_default=False
        ),
    ] = None,
    configs: ConfigsOption = None,
) -> None:
    """Compare a sync step's source and destination tables by count and by hashed ranges
    of the key, name the keys missing or changed, and record the result.

    Exits 1 when the tables differ.
    """
    import uuid

    from deltaflow.quality import reconcile as rc

    try:
        loaded = _loaded(pipeline, configs)
        sync, source, target = rc.sides(loaded, step, uuid.uuid4().hex[:16])
        keys = list(key or sync.destination.primary_key)
        if not keys:
            raise ConfigError(
                f"step '{step}' has no primary_key to compare rows by",
                hint="pass --key COLUMN (repeatable)",
            )
        compared = [c for c in source.columns() if c in set(target.columns())]
        result = rc.reconcile(source, target, keys, compared, buckets)
        day = run_date.date() if run_date else dt.datetime.now(dt.UTC).date()
        row = rc.record(result, loaded, sync, source, target, day, partition_column)
        written = rc.write_record(target, row, recon_table)
        source.resources.close()
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    out.print(
        f"{source.table} -> {target.table}: {row['rcncln_exact_pass_in']} "
        f"({_n(result.source_rows)} rows in the source, {_n(result.target_rows)} in the "
        f"destination; {result.differing_buckets} of {result.buckets} key ranges differ; "
        f"{result.seconds:.2f} s)"
    )
    for label, found in (
        ("missing in the destination", result.missing_in_target),
        ("missing in the source", result.missing_in_source),
        ("changed", result.changed),
    ):
        if found:
            shown = ", ".join(found[:20]) + (" ..." if len(found) > 20 else "")
            out.print(escape(f"{label} ({len(found):,}): {shown}"), soft_wrap=True)
    out.print(f"record appended to {written}")
    if not result.passed:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- metrics

MetricsConfig = Annotated[
    str, typer.Option("--config", help="Metric definitions (JSON), a path or gs://bucket/key.")
]


@metrics_app.command("validate")
def metrics_validate(
    config: MetricsConfig,
    dialect: Annotated[str, typer.Option(help="SQL dialect the metrics are written in.")] = (
        "bigquery"
    ),
) -> None:
    """Check a definitions file and report every problem at once (exit 1 if any)."""
    from deltaflow.metrics import definitions

    try:
        metrics, problems = definitions.parse(definitions.read_text(config), dialect)
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    for problem in problems:
        out.print(escape(f"{config}: {problem}"), soft_wrap=True)
    if problems:
        err.print(f"{len(problems)} problem(s) in {config}")
        raise typer.Exit(1)
    out.print(f"{config}: {len(metrics)} metrics, valid")


def _profile(path: Path, env: str) -> Any:
    """The connection of ``env`` in a profiles file ({DEV: {type: duckdb, ...}, ...})."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    from deltaflow.config.connections import Connection
    from deltaflow.config.secrets import resolve_tree
    from deltaflow.errors import SecretError

    if not path.exists():
        raise ConfigError(
            f"no connection profiles file {path}",
            hint="write one: 'DEV: {type: duckdb, path: metrics.duckdb}' per environment, "
            "or pass --profiles FILE",
        )
    profiles = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if env not in profiles:
        raise ConfigError(
            f"no profile '{env}' in {path}", hint=f"profiles: {', '.join(profiles) or 'none'}"
        )
    failures: list[SecretError] = []
    raw = resolve_tree(profiles[env], path.parent, lambda where, exc: failures.append(exc))
    if failures:
        raise failures[0]
    try:
        return TypeAdapter(Connection).validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(f"profile '{env}' in {path}: {exc}", hint="fix the profile") from None


@metrics_app.command("run")
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
    import uuid

    from deltaflow.connectors.protocol import RunResources
    from deltaflow.metrics import definitions
    from deltaflow.metrics.engine import Run, run_metrics

    _setup_logging(verbose)
    if env not in ("DEV", "BLD", "PRD"):
        err.print(f"error: --env {env}: use DEV, BLD or PRD")
        raise typer.Exit(2)
    try:
        metrics = definitions.select(
            definitions.load(config, dialect), [d for d in (dependencies or "").split(",") if d]
        )
        conn = _profile(profiles, env)
        resources = RunResources(Path.cwd(), uuid.uuid4().hex[:16])
        try:
            run = Run(
                conn,
                resources,
                run_date.date(),
                partition_info_table,
                recon_table,
                env,
                dialect,
                timeout,
                workers,
            )
            outcomes = run_metrics(run, metrics)
        finally:
            resources.close()
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    table = _table(f"Metrics for {run_date.date()}", "metric", "status", "output>", "error")
    for o in outcomes:
        output = o.row.get("metric_output") if o.row else None
        error = f"[{o.error_category}] {o.error_message}" if o.error_category else ""
        table.add_row(
            escape(o.metric.metric_id),
            _status("succeeded" if o.status == "Passed" else "failed"),
            "" if output is None else str(output),
            escape(error),
        )
    out.print(table)
    if any(o.status == "Failed" for o in outcomes):
        raise typer.Exit(1)


# --------------------------------------------------------------------------- quarantine

StepOption = Annotated[
    list[str] | None, typer.Option("--step", help="Only this sync step; repeatable.")
]


def _quarantines(pipeline: str, configs: Path | None, steps: list[str] | None) -> Any:
    import uuid

    from deltaflow.quality import replay

    return replay.quarantines(_loaded(pipeline, configs), steps or [], uuid.uuid4().hex[:16])


@quarantine_app.command("list")
def quarantine_list(
    pipeline: PipelineArgument, step: StepOption = None, configs: ConfigsOption = None
) -> None:
    """Quarantined records of each sync step, by reason code."""
    from deltaflow.quality import replay

    try:
        found = _quarantines(pipeline, configs, step)
        table = _table("Quarantine", "step", "table", "reason code", "records>", "oldest", "newest")
        for q in found:
            for row in replay.summary(q):
                table.add_row(
                    escape(q.step.step_id),
                    escape(q.table + "__quarantine"),
                    row["reason_code"],
                    _n(row["records"]),
                    row["oldest"][:19],
                    row["newest"][:19],
                )
    except DeltaFlowError as exc:
        raise _fail(exc) from None
    out.print(table if table.row_count else "nothing in quarantine")


@quarantine_app.command("show")
def quarantine_show(
    pipeline: PipelineArgument,
    step: StepOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Records to show, oldest first.")] = 20,
    configs: ConfigsOption = None,
) -> None:
    """The quarantined records themselves: when, why, and the record as JSON."""
    from deltaflow.quality import replay

    try:
        for q in _quarantines(pipeline, configs, step):
            for row in replay.records(q, limit):
                out.print(
                    escape(
                        f"{q.step.step_id} {str(row['quarantined_at'])[:19]} "
                        f"[{row['reason_code']}] {row['reason']}\n  {row['record']}"
                    ),
                    soft_wrap=True,
                )
    except DeltaFlowError as exc:
        raise _fail(exc) from None


@quarantine_app.command("replay")
def quarantine_replay(
    pipeline: PipelineArgument, step: StepOption = None, configs: ConfigsOption = None
) -> None:
    """Load the quarantined records through the step as configured now (e.g. after a
    rule was relaxed); the ones that load leave the quarantine, the rest are kept."""
    from deltaflow.quality import replay

    try:
        for q in _quarantines(pipeline, configs, step):
            done = replay.replay(q, _loaded(pipeline, configs))
            out.print(
                f"{q.step.step_id}: replayed {done['replayed']:,}, loaded {done['loaded']:,}, "
                f"still quarantined {done['quarantined']:,}"
            )
    except DeltaFlowError as exc:
        raise _fail(exc) from None


@quarantine_app.command("purge")
def quarantine_purge(
    pipeline: PipelineArgument,
    step: StepOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    configs: ConfigsOption = None,
) -> None:
    """Delete the quarantined records (they are gone for good)."""
    from deltaflow.quality import replay

    if not yes and not typer.confirm("Delete the quarantined records for good?"):
        raise typer.Exit(1)
    try:
        for q in _quarantines(pipeline, configs, step):
            out.print(f"{q.step.step_id}: deleted {replay.purge(q):,} records")
    except DeltaFlowError as exc:
        raise _fail(exc) from None


def _status(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(status, "dim")
    return f"[{colour}]{status}[/]"


def version_callback(value: bool) -> None:
    if value:
        out.print(f"deltaflow {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """DeltaFlow: config-as-code data pipelines on an Arrow data plane."""


def main() -> None:
    app()
