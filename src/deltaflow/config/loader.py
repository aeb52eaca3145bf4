"""Building a Pipeline from a file or a dict: variables, secrets, validation, discovery.

:func:`build` is the one front door: the CLI, tests and the API all come through it, and
it reports every problem at once, each with file, line, key path and a hint.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from deltaflow.config import secrets, variables
from deltaflow.config._yaml import Document, format_path, parse
from deltaflow.config.connections import CONNECTION_MODELS, Connection, ConnectionBase
from deltaflow.config.models import STEP_TYPES, Pipeline, Step, SyncStep
from deltaflow.errors import (
    ConfigValidationError,
    Diagnostic,
    PipelineNotFoundError,
    VariableError,
    did_you_mean,
)

Loc = tuple[str | int, ...]
_Connections = dict[str, ConnectionBase | None]


@dataclass(frozen=True)
class RunContext:
    """The built-in variables of one run."""

    tenant_id: str = "default"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    run_date: dt.date | None = None

    def variables(self) -> dict[str, str]:
        date = self.run_date or self.started_at.date()
        return {
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "run_date": self.started_at.isoformat(timespec="seconds"),
            "date": date.isoformat(),
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
    if candidate.suffix in (".yml", ".yaml") or candidate.exists():
        if candidate.is_file():
            return candidate
        raise PipelineNotFoundError(
            f"pipeline file '{name_or_path}' does not exist",
            hint="check the path, or pass a pipeline id and --configs DIR",
        )
    root = configs or (Path("configs") if Path("configs").is_dir() else Path("."))
    matches = sorted(
        p
        for ext in ("yml", "yaml")
        for p in root.glob(f"**/{name_or_path}.{ext}")
        if ".venv" not in p.parts
    )
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(str(p) for p in matches)
        raise PipelineNotFoundError(
            f"pipeline id '{name_or_path}' matches {len(matches)} files: {listed}",
            hint="pass the file path instead of the id",
        )
    known = sorted({p.stem for ext in ("yml", "yaml") for p in root.glob(f"**/*.{ext}")})
    raise PipelineNotFoundError(
        f"no pipeline '{name_or_path}' under '{root}'.{did_you_mean(name_or_path, known)}",
        hint=f"pass a path, or --configs DIR (pipelines there: {', '.join(known) or 'none'})",
    )


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
    doc = parse(path.read_text(), str(path))
    return build(
        doc,
        base_dir=path.parent,
        cli_vars=cli_vars,
        context=context,
        resolve_secrets=resolve_secrets,
    )


def validate_file(path: Path, cli_vars: Mapping[str, str] | None = None) -> list[Diagnostic]:
    """Every problem in one file, without running anything (secrets stay unresolved)."""
    try:
        text = path.read_text()
    except OSError as exc:
        return [Diagnostic(f"cannot read file: {exc.strerror}", file=str(path))]
    try:
        build(
            parse(text, str(path)), base_dir=path.parent, cli_vars=cli_vars, resolve_secrets=False
        )
    except ConfigValidationError as exc:
        return exc.diagnostics
    return []


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
    report = _Report(doc)
    report.problems.extend(doc.problems)
    data = doc.data
    if doc.problems and data is None:
        raise ConfigValidationError(report.problems)
    if not isinstance(data, dict):
        report.add(
            (),
            "a pipeline file must be a mapping with pipeline_id and steps",
            "start the file with 'pipeline_id: my_pipeline'",
        )
        raise ConfigValidationError(report.problems)
    _check_types(data, report)
    rendered, values = _render(data, context or RunContext(), dict(cli_vars or {}), report)
    _check_secrets(rendered, report)
    if resolve_secrets and not report.problems:
        rendered = secrets.resolve_tree(rendered, base_dir, lambda e: report.add((), str(e)))
    pipeline = _validate(rendered, report)
    _cross_check(*_valid_parts(rendered), report)
    if report.problems:
        raise ConfigValidationError(report.problems)
    assert pipeline is not None
    return LoadedPipeline(pipeline, doc.file, base_dir, values)


class _Report:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Diagnostic] = []
        self.seen: set[tuple[Loc, str]] = set()

    def add(self, loc: Loc, message: str, hint: str | None = None) -> None:
        if (loc, message) in self.seen:
            return
        self.seen.add((loc, message))
        self.problems.append(
            Diagnostic(
                message,
                path=format_path(loc),
                file=self.doc.file,
                line=self.doc.line_of(loc),
                hint=hint,
            )
        )


def _check_types(data: dict[str, Any], report: _Report) -> None:
    """Unknown connection and step types, with 'did you mean'."""
    connections = data.get("connections")
    if isinstance(connections, dict):
        for name, conn in connections.items():
            if isinstance(conn, dict):
                _check_tag(conn, ("connections", name), CONNECTION_MODELS, "connection", report)
    steps = data.get("steps")
    if isinstance(steps, list):
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                _check_tag(step, ("steps", index), STEP_TYPES, "step", report)


def _check_tag(
    item: dict[str, Any], loc: Loc, choices: typing.Iterable[str], what: str, report: _Report
) -> None:
    valid = ", ".join(choices)
    tag = item.get("type")
    if tag is None:
        report.add(loc, f"{what} has no 'type'", f"add 'type:' with one of: {valid}")
    elif tag not in choices:
        report.add(
            (*loc, "type"),
            f"unknown {what} type '{tag}'.{did_you_mean(str(tag), choices)}",
            f"valid {what} types: {valid}",
        )


def _render(
    data: dict[str, Any], context: RunContext, cli: dict[str, str], report: _Report
) -> tuple[dict[str, Any], dict[str, Any]]:
    def on_error(loc: Loc, exc: VariableError) -> None:
        report.add(loc, exc.message, exc.hint)

    own = _mapping(data.get("variables"))
    pipeline_vars = {**variables.layer(context.variables(), own, on_error, ("variables",)), **cli}
    raw_id = data.get("pipeline_id")
    if isinstance(raw_id, str):
        pipeline_vars["pipeline_id"] = variables.render_tree(
            raw_id, pipeline_vars, on_error, ("pipeline_id",)
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "steps" and isinstance(value, list):
            out[key] = [
                _render_step(s, i, pipeline_vars, cli, on_error) for i, s in enumerate(value)
            ]
        elif key == "variables":
            out[key] = value
        else:
            out[key] = variables.render_tree(value, pipeline_vars, on_error, (key,))
    return out, pipeline_vars


def _render_step(
    step: Any,
    index: int,
    pipeline_vars: dict[str, Any],
    cli: dict[str, str],
    on_error: typing.Callable[[Loc, VariableError], None],
) -> Any:
    if not isinstance(step, dict):
        return step
    own = _mapping(step.get("variables"))
    step_vars = {
        **variables.layer(pipeline_vars, own, on_error, ("steps", index, "variables")),
        **cli,
    }
    return {
        key: value
        if key == "variables"
        else variables.render_tree(value, step_vars, on_error, ("steps", index, key))
        for key, value in step.items()
    }


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _check_secrets(value: Any, report: _Report, loc: Loc = ()) -> None:
    if isinstance(value, str):
        for problem in secrets.check(value):
            report.add(loc, problem, "write ${env:NAME} or ${file:path}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_secrets(item, report, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_secrets(item, report, (*loc, index))


# --------------------------------------------------------------------------- pydantic errors


def _validate(data: dict[str, Any], report: _Report) -> Pipeline | None:
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            _report_pydantic(error, data, report)
        return None


def _report_pydantic(error: Any, data: Any, report: _Report) -> None:
    loc = _strip_tags(tuple(error["loc"]), data)
    kind, value = error["type"], error.get("input")
    if kind in ("union_tag_invalid", "union_tag_not_found") or (
        loc and loc[-1] == "type" and kind == "literal_error"
    ):
        return  # reported by _check_types with 'did you mean'
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1], data)
        report.add(
            loc,
            f"unknown key '{loc[-1]}'.{did_you_mean(str(loc[-1]), allowed)}",
            f"valid keys here: {', '.join(allowed)}",
        )
    elif kind == "missing":
        report.add(
            loc,
            f"missing required key '{loc[-1]}'",
            f"add '{loc[-1]}:' under {format_path(loc[:-1]) or 'the top level'}",
        )
    elif kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        report.add(
            loc,
            f"invalid value {value!r}.{did_you_mean(str(value), choices)}",
            f"use one of: {', '.join(c for c in choices if c)}",
        )
    else:
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        report.add(loc, f"{error['msg'][0].lower()}{error['msg'][1:]}{shown}", _hint_for(kind))


def _hint_for(kind: str) -> str | None:
    if kind.endswith(("_type", "_parsing")):
        return "write a value of the expected type"
    if kind == "string_pattern_mismatch":
        return "use letters, digits, '_', '-' and '.' only, starting with a letter or digit"
    if kind in ("greater_than_equal", "less_than_equal", "too_short", "too_long"):
        return "pick a value inside the allowed range"
    return None


def _strip_tags(loc: Loc, data: Any) -> Loc:
    """Drop the discriminator tags pydantic inserts into error locations."""
    out: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part not in current and current.get("type") == part:
            continue
        out.append(part)
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            current = None
    return tuple(out)


def _fields_at(loc: Loc, data: Any) -> list[str]:
    """The keys the model at ``loc`` accepts."""
    model = _model_at(loc, data)
    return sorted(model.model_fields) if model else []


def _model_at(loc: Loc, data: Any) -> type[BaseModel] | None:
    current: Any = Pipeline
    for part in loc:
        current = _unwrap(current, data)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            current = info.annotation if info else None
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return None
        data = (
            data.get(part)
            if isinstance(data, dict)
            else (
                data[part]
                if isinstance(data, list) and isinstance(part, int) and part < len(data)
                else None
            )
        )
    current = _unwrap(current, data)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any, data: Any) -> Any:
    """Annotated[X] -> X; a union -> the member whose type tag matches ``data``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        tag = data.get("type") if isinstance(data, dict) else None
        for member in members:
            fields = getattr(member, "model_fields", {})
            if "type" in fields and tag in typing.get_args(fields["type"].annotation):
                return member
        return members[0] if len(members) == 1 else None
    return annotation


# --------------------------------------------------------------------------- cross checks


_CONNECTION = TypeAdapter(Connection)
_STEP = TypeAdapter(Step)


def _valid_parts(data: dict[str, Any]) -> tuple[_Connections, list[tuple[int, SyncStep]]]:
    """The connections and steps that are valid on their own, for the cross checks."""
    raw = _mapping(data.get("connections"))
    connections: _Connections = {}
    for name, value in raw.items():
        try:
            connections[str(name)] = _CONNECTION.validate_python(value)
        except ValidationError:
            connections[str(name)] = None  # defined, but reported already
    steps = []
    for index, value in enumerate(data.get("steps") or []):
        try:
            steps.append((index, _STEP.validate_python(value)))
        except ValidationError:
            continue
    return connections, steps


def _cross_check(
    connections: _Connections, steps: list[tuple[int, SyncStep]], report: _Report
) -> None:
    seen: dict[str, int] = {}
    for index, step in steps:
        if step.step_id in seen:
            report.add(
                ("steps", index, "step_id"),
                f"duplicate step_id '{step.step_id}' (also steps[{seen[step.step_id]}])",
                "give every step a unique step_id",
            )
        seen.setdefault(step.step_id, index)
        _check_sync(connections, step, ("steps", index), report)


def _check_sync(connections: _Connections, step: SyncStep, loc: Loc, report: _Report) -> None:
    for role in ("source", "destination"):
        spec = getattr(step, role)
        conn = _connection(connections, spec.connection, (*loc, role, "connection"), report)
        if conn is None:
            continue
        allowed = conn.source_options if role == "source" else conn.destination_options
        given = spec.model_fields_set - {"connection"}
        for option in sorted(given - allowed):
            report.add(
                (*loc, role, option),
                f"'{option}' does not apply to a {conn.kind} {role}",
                f"{conn.kind} {role}s take: {', '.join(sorted(allowed))}",
            )
        required = conn.required_source if role == "source" else conn.required_destination
        for one_of in required:
            if not given & one_of:
                keys = " or ".join(f"'{k}'" for k in sorted(one_of))
                report.add(
                    (*loc, role),
                    f"a {conn.kind} {role} needs {keys}",
                    f"add {keys} under {format_path((*loc, role))}",
                )
        if role == "destination":
            _check_write_mode(step, conn, (*loc, role), report)


def _connection(
    connections: _Connections, name: str, loc: Loc, report: _Report
) -> ConnectionBase | None:
    conn = connections.get(name)
    if name not in connections:
        known = sorted(connections)
        report.add(
            loc,
            f"connection '{name}' is not defined.{did_you_mean(name, known)}",
            f"define it under 'connections:' (defined: {', '.join(known) or 'none'})",
        )
    return conn


def _check_write_mode(step: SyncStep, conn: ConnectionBase, loc: Loc, report: _Report) -> None:
    dest = step.destination
    if dest.write_mode not in conn.write_modes:
        report.add(
            (*loc, "write_mode"),
            f"write_mode '{dest.write_mode}' is not supported by a {conn.kind} destination",
            f"use one of: {', '.join(conn.write_modes)}",
        )
    if dest.write_mode == "merge" and not dest.primary_key:
        report.add(
            (*loc, "write_mode"),
            "write_mode 'merge' needs a primary_key",
            "add 'primary_key: [id]' (the columns that identify a row)",
        )
