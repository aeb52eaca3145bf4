"""The ``deltaflow`` command line: it parses arguments, calls ``deltaflow.ops`` and
renders the result. One module per command group; heavy imports (pydantic, pyarrow,
drivers) happen inside the commands, so ``deltaflow --help`` stays fast."""

from __future__ import annotations

from typing import Annotated

import typer

from deltaflow import __version__
from deltaflow.cli import (
    metrics,
    quarantine,
    reconcile,
    run,
    runs,
    serve,
    state,
    validate,
    worker,
)
from deltaflow.cli._render import out

__all__ = ["app", "main"]

app = typer.Typer(
    name="deltaflow",
    help="DeltaFlow: config-as-code data pipelines on an Arrow data plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(run.run)
app.command()(run.check)
app.command()(validate.validate)
app.command()(validate.schema)
app.command()(reconcile.reconcile)
app.command()(serve.serve)
app.command()(worker.worker)
app.add_typer(runs.app, name="runs")
app.add_typer(state.app, name="state")
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(metrics.app, name="metrics")


def version_callback(value: bool) -> None:
    """``--version``: print it and stop."""
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
    """The console script's entry point."""
    app()
