"""``deltaflow reconcile``: compare a sync step's source and destination tables."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deltaflow.cli._options import ConfigsOption, PipelineArgument
from deltaflow.cli._render import fail, n, out
from deltaflow.errors import DeltaFlowError

if TYPE_CHECKING:
    from deltaflow.ops.reconcile import ReconcileOutcome

#: keys listed per kind of difference; the rest are counted
SHOWN_KEYS = 20


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
    from deltaflow.ops import reconcile as ops

    request = ops.ReconcileRequest(
        pipeline,
        step,
        key or [],
        buckets,
        partition_column,
        recon_table,
        run_date.date() if run_date else None,
        configs,
    )
    try:
        outcome = ops.reconcile(request)
    except DeltaFlowError as exc:
        raise fail(exc) from None
    _print_outcome(outcome)
    if not outcome.passed:
        raise typer.Exit(1)


def _print_outcome(outcome: ReconcileOutcome) -> None:
    """The verdict with counts, the differing keys (the first few), the record table."""
    result = outcome.result
    out.print(
        f"{outcome.source_table} -> {outcome.target_table}: {outcome.verdict} "
        f"({n(result.source_rows)} rows in the source, {n(result.target_rows)} in the "
        f"destination; {result.differing_buckets} of {result.buckets} key ranges differ; "
        f"{result.seconds:.2f} s)"
    )
    for label, found in (
        ("missing in the destination", result.missing_in_target),
        ("missing in the source", result.missing_in_source),
        ("changed", result.changed),
    ):
        if found:
            shown = ", ".join(found[:SHOWN_KEYS]) + (" ..." if len(found) > SHOWN_KEYS else "")
            out.print(escape(f"{label} ({len(found):,}): {shown}"), soft_wrap=True)
    out.print(f"record appended to {outcome.written}")
