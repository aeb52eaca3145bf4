"""``deltaflow validate`` and ``deltaflow schema``: check pipeline files; print the
JSON Schema of the format."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from deltaflow.cli._render import err, fail, out
from deltaflow.errors import DeltaFlowError


def validate(
    paths: Annotated[list[Path], typer.Argument(help="Pipeline files to check.")],
    var: Annotated[
        list[str] | None, typer.Option("--var", help="Variables to assume, NAME=VALUE.")
    ] = None,
) -> None:
    """Check pipeline files without running them; exit 1 if any has a problem."""
    from deltaflow.config.variables import parse_assignments
    from deltaflow.ops import validate as ops

    try:
        variables = parse_assignments(var or [])
    except DeltaFlowError as exc:
        raise fail(exc, 2) from None
    problems = 0
    for report in ops.validate(paths, variables):
        problems += len(report.diagnostics)
        for diagnostic in report.diagnostics:
            out.print(str(diagnostic), markup=False, soft_wrap=True)
        if report.ok:
            out.print(f"{report.path}: ok", markup=False)
    if problems:
        noun = "problem" if problems == 1 else "problems"
        err.print(f"{problems} {noun} in {len(paths)} file(s)")
        raise typer.Exit(1)


def schema() -> None:
    """Print the JSON Schema of the pipeline format (for editor completion)."""
    from deltaflow.ops.validate import pipeline_schema

    sys.stdout.write(json.dumps(pipeline_schema(), indent=2) + "\n")
