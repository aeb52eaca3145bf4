"""Building a Pipeline from a file or a dict: discovery, variables, secrets, validation.

:func:`build` is the one front door: the CLI, tests and the API all come through it, and
it reports every problem at once, each with file, line, key path and a hint. The checks
themselves live beside it: ``_render`` (variables and secret references), ``diagnostics``
(pydantic errors and unknown types) and ``cross_checks`` (rules across keys).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltaflow.config import secrets
from deltaflow.config._render import check_secrets, mark_references, render
from deltaflow.config._report import Report
from deltaflow.config._yaml import MAX_CHARS, Document, parse
from deltaflow.config.cross_checks import connections, cross_check
from deltaflow.config.diagnostics import check_types, validate
from deltaflow.config.models import Pipeline
from deltaflow.config.options import SyncOptions
from deltaflow.errors import ConfigValidationError, Diagnostic, PipelineNotFoundError, did_you_mean

__all__ = [
    "LoadedPipeline",
    "RunContext",
    "build",
    "find_pipeline",
    "load_pipeline",
    "validate_file",
]


@dataclass(frozen=True)
class RunContext:
    """The built-in variables of one run, and its run-time options."""

    tenant_id: str = "default"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    run_date: dt.date | None = None
    sync: SyncOptions = field(default_factory=SyncOptions)
    """Overrides of incremental settings (--full-refresh, --start, --end, ...)."""

    def variables(self) -> dict[str, str]:
        """``tenant_id``, ``run_id``, ``run_date`` (the start time, UTC, ISO 8601) and
        ``date`` (the date the run is for: ``run_date`` given here, else the start date)."""
        return {
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "run_date": self.started_at.isoformat(timespec="seconds"),
            "date": (self.run_date or self.started_at.date()).isoformat(),
        }


@dataclass(frozen=True)
class LoadedPipeline:
    """A validated pipeline and where it came from."""

    pipeline: Pipeline
    file: str
    base_dir: Path
    variables: Mapping[str, Any]


# --------------------------------------------------------------------------- discovery


def find_pipeline(name_or_path: str, configs: Path | None = None) -> Path:
    """A pipeline file by path, or by id: ``orders`` finds ``**/orders.yml`` under configs."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yml", ".yaml") or candidate.is_file():
        if candidate.is_file():
            return candidate
        raise PipelineNotFoundError(
            f"pipeline file '{name_or_path}' does not exist",
            hint="check the path, or pass a pipeline id and --configs DIR",
        )
    root = configs or (Path("configs") if Path("configs").is_dir() else Path("."))
    matches = sorted(
        p for ext in ("yml", "yaml") for p in root.glob(f"**/{name_or_path}.{ext}") if _kept(p)
    )
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(str(p) for p in matches)
        raise PipelineNotFoundError(
            f"pipeline id '{name_or_path}' matches {len(matches)} files: {listed}",
            hint="pass the file path instead of the id",
        )
    known = sorted(
        {p.stem for ext in ("yml", "yaml") for p in root.glob(f"**/*.{ext}") if _kept(p)}
    )
    raise PipelineNotFoundError(
        f"no pipeline '{name_or_path}' under '{root}'.{did_you_mean(name_or_path, known)}",
        hint=f"pass a path, or --configs DIR (pipelines there: {', '.join(known) or 'none'})",
    )


def _kept(path: Path) -> bool:
    """Files inside a virtualenv are never pipelines."""
    return path.is_file() and ".venv" not in path.parts


def _read(path: Path) -> str:
    """The text of a pipeline file; a file that cannot be read is one diagnostic, at the
    line of the first byte that is not UTF-8 when that is why."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CHARS * 4 + 1)  # at most 4 bytes a character
    except OSError as exc:
        raise _unreadable(path, exc.strerror or str(exc), None) from None
    if len(raw) > MAX_CHARS * 4:  # so surely more than MAX_CHARS characters
        line = raw.count(b"\n", 0, MAX_CHARS) + 1
        raise _unreadable(path, f"longer than the limit of {MAX_CHARS:,} characters", line)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        reason = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column})"
        raise _unreadable(path, reason, line) from None


def _unreadable(path: Path, reason: str, line: int | None) -> ConfigValidationError:
    diagnostic = Diagnostic(
        f"cannot read file: {reason}",
        file=str(path),
        line=line,
        hint="pass an existing, readable pipeline file saved as UTF-8",
    )
    return ConfigValidationError([diagnostic])


def load_pipeline(
    name_or_path: str | Path,
    *,
    configs: Path | None = None,
    cli_vars: Mapping[str, str] | None = None,
    context: RunContext | None = None,
    resolve_secrets: bool = True,
) -> LoadedPipeline:
    """Find, read and validate a pipeline file; raise ConfigValidationError listing all problems."""
    path = find_pipeline(str(name_or_path), configs)
    doc = parse(_read(path), str(path))
    return build(
        doc,
        base_dir=path.parent,
        cli_vars=cli_vars,
        context=context,
        resolve_secrets=resolve_secrets,
    )


def validate_file(path: Path, cli_vars: Mapping[str, str] | None = None) -> list[Diagnostic]:
    """Every problem in one file, without running anything.

    Secrets stay unresolved, so a value that is a ``${env:..}`` reference is not checked.
    """
    try:
        doc = parse(_read(path), str(path))
        report, _, _ = _check(doc, path.parent, cli_vars, None, resolve_secrets=False)
    except ConfigValidationError as exc:
        return exc.diagnostics
    return report.problems


# --------------------------------------------------------------------------- building


def build(
    doc: Document,
    *,
    base_dir: Path,
    cli_vars: Mapping[str, str] | None = None,
    context: RunContext | None = None,
    resolve_secrets: bool = True,
) -> LoadedPipeline:
    """Resolve variables (and secrets), validate, and cross-check a parsed document."""
    report, pipeline, values = _check(doc, base_dir, cli_vars, context, resolve_secrets)
    if report.problems:
        raise ConfigValidationError(report.problems)
    if pipeline is None:  # only values that are unresolved secret references are wrong
        raise ConfigValidationError(
            report.deferred
            or [Diagnostic("the pipeline is not valid", file=doc.file, line=doc.line_of(()) or 1)]
        )
    return LoadedPipeline(pipeline, doc.file, base_dir, values)


def _check(
    doc: Document,
    base_dir: Path,
    cli_vars: Mapping[str, str] | None,
    context: RunContext | None,
    resolve_secrets: bool,
) -> tuple[Report, Pipeline | None, dict[str, Any]]:
    """What :func:`build` does, short of raising; raises only when nothing can be checked."""
    report = Report(doc)
    data = _top_level(doc, report)
    check_types(data, report)
    base = (context or RunContext()).variables()
    rendered, values = render(data, base, dict(cli_vars or {}), report)
    check_secrets(rendered, report)
    if resolve_secrets and not report.problems:
        rendered = secrets.resolve_tree(
            rendered, base_dir, lambda loc, e: report.add(loc, e.message, e.hint, flag=True)
        )
    else:
        mark_references(rendered, report)  # their values are unknown: checking them is moot
    pipeline = validate(rendered, report)
    cross_check(rendered, connections(rendered), report)
    return report, pipeline, values


_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _top_level(doc: Document, report: Report) -> dict[str, Any]:
    """The document's mapping, with its parse problems reported; raises when it has none."""
    report.problems.extend(doc.problems)
    data = doc.data
    if doc.problems and data is None:
        raise ConfigValidationError(report.problems)
    if not isinstance(data, dict):
        found = "an empty file" if data is None else _KINDS.get(type(data), "a plain value")
        report.add(
            (),
            f"a pipeline file must be a mapping with pipeline_id and steps, not {found}",
            "start the file with 'pipeline_id: my_pipeline', then 'steps:'",
            line=doc.line_of(()) or 1,
        )
        raise ConfigValidationError(report.problems)
    return data
