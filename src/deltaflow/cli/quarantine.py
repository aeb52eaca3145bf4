"""``deltaflow quarantine``: rows kept out of a load, with their reasons."""

from __future__ import annotations

from contextlib import closing
from typing import Annotated

import typer
from rich.markup import escape

from deltaflow.cli._options import ConfigsOption, PipelineArgument
from deltaflow.cli._render import fail, n, out, table
from deltaflow.errors import DeltaFlowError

app = typer.Typer(
    help="Rows kept out of a load, with their reasons: list, show, replay, purge "
    "(DuckDB, PostgreSQL and BigQuery destinations).",
    no_args_is_help=True,
)

StepOption = Annotated[
    list[str] | None, typer.Option("--step", help="Only this sync step; repeatable.")
]


@app.command("list")
def quarantine_list(
    pipeline: PipelineArgument, step: StepOption = None, configs: ConfigsOption = None
) -> None:
    """Quarantined records of each sync step, by reason code."""
    from deltaflow.ops import quarantine as ops

    try:
        found = ops.summaries(pipeline, step or [], configs)
    except DeltaFlowError as exc:
        raise fail(exc) from None
    listing = table("Quarantine", "step", "table", "reason code", "records>", "oldest", "newest")
    for row in found:
        listing.add_row(
            escape(row.step_id),
            escape(row.table),
            row.reason_code,
            n(row.records),
            row.oldest[:19],
            row.newest[:19],
        )
    out.print(listing if listing.row_count else "nothing in quarantine")


@app.command("show")
def quarantine_show(
    pipeline: PipelineArgument,
    step: StepOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Records to show, oldest first.")] = 20,
    configs: ConfigsOption = None,
) -> None:
    """The quarantined records themselves: when, why, and the record as JSON."""
    from deltaflow.ops import quarantine as ops

    try:
        with closing(ops.records(pipeline, step or [], limit, configs)) as found:
            for r in found:
                out.print(
                    escape(
                        f"{r.step_id} {r.quarantined_at[:19]} [{r.reason_code}] {r.reason}\n"
                        f"  {r.record}"
                    ),
                    soft_wrap=True,
                )
    except DeltaFlowError as exc:
        raise fail(exc) from None


@app.command("replay")
def quarantine_replay(
    pipeline: PipelineArgument, step: StepOption = None, configs: ConfigsOption = None
) -> None:
    """Load the quarantined records through the step as configured now (e.g. after a
    rule was relaxed); the ones that load leave the quarantine, the rest are kept."""
    from deltaflow.ops import quarantine as ops

    try:
        with closing(ops.replay(pipeline, step or [], configs)) as done:
            for d in done:
                out.print(
                    f"{d.step_id}: replayed {d.replayed:,}, loaded {d.loaded:,}, "
                    f"still quarantined {d.quarantined:,}"
                )
    except DeltaFlowError as exc:
        raise fail(exc) from None


@app.command("purge")
def quarantine_purge(
    pipeline: PipelineArgument,
    step: StepOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    configs: ConfigsOption = None,
) -> None:
    """Delete the quarantined records (they are gone for good)."""
    from deltaflow.ops import quarantine as ops

    if not yes and not typer.confirm("Delete the quarantined records for good?"):
        raise typer.Exit(1)
    try:
        with closing(ops.purge(pipeline, step or [], configs)) as done:
            for d in done:
                out.print(f"{d.step_id}: deleted {d.deleted:,} records")
    except DeltaFlowError as exc:
        raise fail(exc) from None
