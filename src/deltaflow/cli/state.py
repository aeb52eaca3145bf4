"""``deltaflow state``: the incremental state (watermarks) of a pipeline's steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deltaflow.cli._options import ConfigsOption, PipelineArgument
from deltaflow.cli._render import fail, n, out, table
from deltaflow.errors import DeltaFlowError

if TYPE_CHECKING:
    from deltaflow.sync.state import StepState

app = typer.Typer(
    help="Incremental state (watermarks) of a pipeline's steps: show, set, reset.",
    no_args_is_help=True,
)


@app.command("show")
def state_show(
    pipeline: PipelineArgument,
    step: Annotated[str | None, typer.Argument(help="Only this step.")] = None,
    configs: ConfigsOption = None,
) -> None:
    """Show the watermark of each incremental step, as committed in its destination."""
    from deltaflow.ops import state as ops

    try:
        found = ops.show(pipeline, step, configs)
    except DeltaFlowError as exc:
        raise fail(exc) from None
    _print_state(found)


def _print_state(found: list[StepState]) -> None:
    """One row per stream of each incremental step ("none yet" before its first run)."""
    listing = table(
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
            listing.add_row(
                escape(entry.step_id), escape(entry.destination), "", "", "none yet", "", "", ""
            )
        for r in entry.records:
            listing.add_row(
                escape(entry.step_id),
                escape(entry.destination),
                escape(r.key.rsplit("/", 1)[-1]),
                escape(r.cursor),
                r.watermark or "",
                n(len(r.boundary)),
                escape(r.run_id),
                r.updated_at[:19].replace("T", " "),
            )
    out.print(listing)


@app.command("set")
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
    from deltaflow.ops import state as ops

    try:
        record = ops.set_watermark(pipeline, step, value, stream, configs)
    except DeltaFlowError as exc:
        raise fail(exc) from None
    out.print(f"{escape(step)}: watermark set to {record.watermark}")


@app.command("reset")
def state_reset(
    pipeline: PipelineArgument,
    step: Annotated[str | None, typer.Argument(help="Only this step.")] = None,
    configs: ConfigsOption = None,
) -> None:
    """Forget the watermark: the next run starts from MAX(cursor) of the destination, or
    by the on_empty rule when it is empty (use 'run --full-refresh' to reload)."""
    from deltaflow.ops import state as ops

    try:
        removed = ops.reset(pipeline, step, configs)
    except DeltaFlowError as exc:
        raise fail(exc) from None
    out.print(f"removed {removed} state record(s)")
