"""Consoles and the renderers the command groups share: tables, numbers, statuses,
what a step did, errors, and log output with secrets masked."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deltaflow.config.secrets import redact

if TYPE_CHECKING:
    from deltaflow.errors import DeltaFlowError
    from deltaflow.metadata.store import StepRecord

# Piped output is not cut to 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def fail(error: DeltaFlowError, code: int = 1) -> typer.Exit:
    """Print the error (code, message, fix; secrets masked); the exit to raise."""
    message = escape(f"[{error.code}] {redact(str(error))}")
    err.print(f"[bold red]error[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


class RedactingFormatter(logging.Formatter):
    """Masks secrets in the whole formatted record, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(verbose: bool) -> None:
    """Log to standard error: warnings, or everything with ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("deltaflow")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


def table(title: str, *columns: str) -> Table:
    """A table with these columns; a trailing '>' right-aligns a column."""
    made = Table(title=title, title_justify="left")
    for column in columns:
        right = column.endswith(">")
        made.add_column(column.rstrip(">"), justify="right" if right else "left")
    return made


def n(value: int | None) -> str:
    """A count with thousands separators; blank when unknown."""
    return "" if value is None else f"{value:,}"


def seconds(value: float | None) -> str:
    """A duration in seconds, two decimals; blank when unknown."""
    return f"{value:.2f}" if value is not None else ""


def status(value: str) -> str:
    """A run, step or check status in its colour."""
    colour = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(value, "dim")
    return f"[{colour}]{value}[/]"


def size(value: int) -> str:
    """A byte count in B, KB, MB or GB."""
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:,.0f} {unit}" if unit == "B" else f"{amount:,.1f} {unit}"
        amount /= 1024
    return f"{amount:,.1f} TB"


def print_step_details(steps: list[StepRecord]) -> None:
    """What the steps did beyond the summary: incremental windows, load notes, checks."""
    print_incremental(steps)
    print_load_notes(steps)
    print_checks(steps)


def print_incremental(steps: list[StepRecord]) -> None:
    """One line per incremental stream: the window, why, NULL cursors, the watermark."""
    for s in steps:
        plans = s.details.get("incremental")
        if not plans:
            continue
        by_stream = {s.stream or s.step_id: plans} if "mode" in plans else plans
        for stream, plan in by_stream.items():
            out.print(escape(f"{s.step_id}/{stream}: {_incremental_line(plan)}"), soft_wrap=True)


def _incremental_line(plan: dict[str, Any]) -> str:
    """One incremental plan as a line of text."""
    window = f"[{plan.get('start') or 'beginning'}, {plan.get('end') or 'no end'})"
    parts = [f"{plan['mode']} on {plan['cursor']} {window}: {plan['reason']}"]
    parts.append(f"NULL cursors {plan.get('null_cursor_rows', 0):,}")
    if plan.get("already_loaded"):
        parts.append(f"already loaded at the watermark {plan['already_loaded']:,}")
    parts.append(f"watermark {plan.get('watermark') or 'none'}")
    return "; ".join(parts)


def print_load_notes(steps: list[StepRecord]) -> None:
    """What a load did beyond its rows: quarantined rows, renamed columns, splits already
    loaded by an earlier run, BigQuery jobs and bytes."""
    for s in steps:
        notes = _load_notes(s.details)
        if notes:
            out.print(escape(f"{s.step_id}/{s.stream or ''}: " + "; ".join(notes)), soft_wrap=True)


def _load_notes(d: dict[str, Any]) -> list[str]:
    """The notes worth printing from a load step's details."""
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
            f"jobs, {size(d.get('bytes_processed', 0))} processed, "
            f"{size(d.get('bytes_billed', 0))} billed"
        )
    return notes


def print_checks(steps: list[StepRecord]) -> None:
    """Each quality step's check results and its table's quality score."""
    for s in steps:
        results = s.details.get("checks")
        if not results:
            continue
        checks = table(
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
            checks.add_row(
                escape(r["name"]),
                r["severity"],
                status(r["status"]),
                n(r.get("failing_rows")),
                n(r.get("rows_checked")),
                escape("" if observed is None else str(observed))[:40],
                escape(r.get("message") or ""),
            )
        out.print(checks)
