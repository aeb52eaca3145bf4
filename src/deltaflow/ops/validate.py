"""Check pipeline files without running them; the JSON Schema of the pipeline format."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltaflow.config.loader import validate_file
from deltaflow.config.models import Pipeline
from deltaflow.errors import Diagnostic


@dataclass(frozen=True)
class FileReport:
    """One file's problems; none means it is valid."""

    path: Path
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def validate(paths: Sequence[Path], variables: Mapping[str, str]) -> Iterator[FileReport]:
    """Each file's report, one at a time, assuming ``variables``."""
    for path in paths:
        yield FileReport(path, validate_file(path, variables))


def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pipeline file, for editor completion."""
    document = Pipeline.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "DeltaFlow pipeline"
    return document
