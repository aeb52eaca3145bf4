"""Arguments and options several command groups share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
