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
from deltaflow.config.models import (
    STEP_TYPES,
    DestinationSpec,
    IncrementalSpec,
    Pipeline,
    SourceSpec,
)
from deltaflow.config.options import SyncOptions
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
    """The text of a pipeline file; a file that cannot be read is one diagnostic."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = (
            (exc.strerror or str(exc))
            if isinstance(exc, OSError)
            else f"not UTF-8 text ({exc.reason})"
        )
        diagnostic = Diagnostic(
            f"cannot read file: {reason}",
            file=str(path),
            hint="pass an existing, readable pipeline file saved as UTF-8",
        )
        raise ConfigValidationError([diagnostic]) from None


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
            report.deferred or [Diagnostic("the pipeline is not valid", file=doc.file)]
        )
    return LoadedPipeline(pipeline, doc.file, base_dir, values)


def _check(
    doc: Document,
    base_dir: Path,
    cli_vars: Mapping[str, str] | None,
    context: RunContext | None,
    resolve_secrets: bool,
) -> tuple[_Report, Pipeline | None, dict[str, Any]]:
    """What :func:`build` does, short of raising; raises only when nothing can be checked."""
    report = _Report(doc)
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
    _check_types(data, report)
    rendered, values = _render(data, context or RunContext(), dict(cli_vars or {}), report)
    _check_secrets(rendered, report)
    if resolve_secrets and not report.problems:
        rendered = secrets.resolve_tree(
            rendered, base_dir, lambda loc, e: report.add(loc, e.message, e.hint, flag=True)
        )
    else:
        _mark_references(rendered, report)  # their values are unknown: checking them is moot
    pipeline = _validate(rendered, report)
    _cross_check(rendered, _connections(rendered), report)
    return report, pipeline, values


_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class _Report:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Diagnostic] = []
        self.seen: set[tuple[Loc, str]] = set()
        self.flagged: set[Loc] = set()
        """Values whose variables or secrets did not resolve: their validation is moot."""
        self.unresolved: set[Loc] = set()
        """Values that are secret references, left unresolved."""
        self.deferred: list[Diagnostic] = []
        """Problems with those values: moot unless the pipeline must be built regardless."""

    def add(
        self,
        loc: Loc,
        message: str,
        hint: str | None = None,
        *,
        line: int | None = None,
        flag: bool = False,
    ) -> None:
        if flag:
            self.flagged.add(loc)
        if (loc, message) in self.seen:
            return
        self.seen.add((loc, message))
        found = self.deferred if loc in self.unresolved else self.problems
        found.append(
            Diagnostic(
                secrets.redact(message),  # a value may be a resolved secret
                path=format_path(loc),
                file=self.doc.file,
                line=line or self.doc.line_of(loc),
                hint=secrets.redact(hint) if hint else hint,
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
    elif not isinstance(tag, str) or tag not in choices:
        report.add(
            (*loc, "type"),
            f"unknown {what} type '{tag}'.{did_you_mean(str(tag), choices)}",
            f"valid {what} types: {valid}",
        )


def _render(
    data: dict[str, Any], context: RunContext, cli: dict[str, str], report: _Report
) -> tuple[dict[str, Any], dict[str, Any]]:
    def on_error(loc: Loc, exc: VariableError) -> None:
        report.add(loc, exc.message, exc.hint, flag=True)

    def ignore(loc: Loc, exc: VariableError) -> None:
        pass

    own = _mapping(data.get("variables"))
    base = context.variables()
    raw_id = data.get("pipeline_id")
    pipeline_id = None
    if isinstance(raw_id, str):
        # The id may use the context, the pipeline's variables and --var; once rendered,
        # the pipeline's variables may use {pipeline_id} in turn.
        draft = {**variables.layer(base, own, ignore, ("variables",)), **cli}
        pipeline_id = variables.render_tree(raw_id, draft, on_error, ("pipeline_id",))
        base["pipeline_id"] = pipeline_id
    pipeline_vars = {**variables.layer(base, own, on_error, ("variables",)), **cli}
    if pipeline_id is not None:
        pipeline_vars["pipeline_id"] = pipeline_id  # always the id of the pipeline itself
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "pipeline_id" and pipeline_id is not None:
            out[key] = pipeline_id
        elif key == "steps" and isinstance(value, list):
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


_SECRET_HINT = (
    f"valid providers: {', '.join(secrets.PROVIDERS)}; write ${{env:NAME}} or ${{file:path}}"
)


def _mark_references(value: Any, report: _Report, loc: Loc = ()) -> None:
    if isinstance(value, str) and secrets.has_reference(value):
        report.unresolved.add(loc)
    elif isinstance(value, dict):
        for key, item in value.items():
            _mark_references(item, report, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _mark_references(item, report, (*loc, index))


def _check_secrets(value: Any, report: _Report, loc: Loc = ()) -> None:
    if isinstance(value, str):
        for problem in secrets.check(value):
            report.add(loc, problem, _SECRET_HINT, flag=True)
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
    if loc in report.flagged:
        return  # holds an unresolved {variable} or secret, reported already
    if (loc and loc[-1] == "[key]") or kind == "invalid_key":
        loc = loc[:-1] if loc and loc[-1] == "[key]" else loc
        report.add(
            (*loc[:-1], str(value)),  # shown as a key, not as a list index
            f"key {value!r} is not a string",
            "put the key in quotes: YAML reads unquoted 1, yes, no, on, off and dates "
            "as numbers, booleans and dates",
            line=report.doc.line_of(loc),
        )
    elif kind == "extra_forbidden":
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
        message = f"{error['msg'][0].lower()}{error['msg'][1:]}{shown}"
        report.add(loc, message, _hint_for(kind, error.get("ctx") or {}, value))


_PATTERN_HINTS = {
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$": "use letters, digits, '_', '-' and '.' only, "
    "starting with a letter, digit or '_'",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "use letters, digits and '_' only, starting with a letter or '_'",
    r"^\d+(\.\d+)?\s*[KMGT]i?B$": "write a size such as '512MB', '1GB' or '2GiB'",
}


def _hint_for(kind: str, ctx: Mapping[str, Any], value: Any) -> str | None:
    if kind.endswith(("_type", "_parsing")):
        return "write a value of the expected type"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return _PATTERN_HINTS.get(pattern, f"write a value matching {pattern}")
    if kind == "too_short" and isinstance(value, list):
        return f"add at least {ctx.get('min_length', 1)} item(s)"
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
_SPECS: dict[str, type[BaseModel]] = {"source": SourceSpec, "destination": DestinationSpec}


def _connections(data: dict[str, Any]) -> _Connections:
    """Every defined connection: its model when it is valid on its own, else None."""
    connections: _Connections = {}
    for name, value in _mapping(data.get("connections")).items():
        try:
            connections[str(name)] = _CONNECTION.validate_python(value)
        except ValidationError:
            connections[str(name)] = None  # defined, but reported already
    return connections


def _cross_check(data: dict[str, Any], connections: _Connections, report: _Report) -> None:
    """Checks across keys: unique step ids, connection references, options per type.

    They run on the raw steps, so a step with some other mistake is still checked.
    """
    steps = data.get("steps")
    if not isinstance(steps, list):
        return
    seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        step_id = step.get("step_id")
        if isinstance(step_id, str) and step_id in seen:
            report.add(
                ("steps", index, "step_id"),
                f"duplicate step_id '{step_id}' (also steps[{seen[step_id]}])",
                "give every step a unique step_id",
            )
        if isinstance(step_id, str):
            seen.setdefault(step_id, index)
        if step.get("type") == "sync":
            _check_sync(connections, step, ("steps", index), report)
        elif step.get("type") in ("quality", "metrics"):
            _check_quality(connections, step, ("steps", index), report)


def _check_sync(connections: _Connections, step: dict[str, Any], loc: Loc, report: _Report) -> None:
    roles: list[tuple[str, Any, Loc]] = [
        (role, step.get(role), (*loc, role)) for role in ("source", "destination")
    ]
    if isinstance(step.get("sources"), list):
        roles += [("source", raw, (*loc, "sources", i)) for i, raw in enumerate(step["sources"])]
    for role, raw, where in roles:
        model = _SPECS[role]
        name = raw.get("connection") if isinstance(raw, dict) else None
        if not isinstance(name, str):
            continue  # missing or not a name: reported by the model validation
        conn = _connection(connections, name, (*where, "connection"), report)
        try:
            spec = model.model_validate(raw)
        except ValidationError:
            continue  # reported by the model validation; what follows would be noise
        if conn is None:
            continue
        assert isinstance(spec, SourceSpec | DestinationSpec)
        allowed = conn.source_options if role == "source" else conn.destination_options
        if not allowed:
            report.add(
                (*where, "connection"),
                f"connection '{name}' is {conn.kind}, which cannot be a {role}",
                f"use a connection of another type as the {role}",
            )
            continue
        fields = type(spec).model_fields
        given = {fields[f].alias or f for f in spec.model_fields_set} - {"connection"}
        for option in sorted(given - allowed):
            report.add(
                (*where, option),
                f"'{option}' does not apply to a {conn.kind} {role}",
                f"{conn.kind} {role}s take: {', '.join(sorted(allowed))}",
            )
        required = conn.required_source if role == "source" else conn.required_destination
        for one_of in required:
            if not given & one_of:
                keys = " or ".join(f"'{k}'" for k in sorted(one_of))
                report.add(
                    where,
                    f"a {conn.kind} {role} needs {keys}",
                    f"add {keys} under {format_path(where)}",
                )
        if isinstance(spec, DestinationSpec):
            _check_write_mode(spec, conn, where, report)
            _check_incremental(step, spec, conn, loc, report)


#: connection types whose tables quality checks run in
WAREHOUSES = ("bigquery", "duckdb", "postgres")


def _check_quality(
    connections: _Connections, step: dict[str, Any], loc: Loc, report: _Report
) -> None:
    name = step.get("connection")
    if not isinstance(name, str):
        return  # reported by the model validation
    conn = _connection(connections, name, (*loc, "connection"), report)
    if conn is not None and conn.kind not in WAREHOUSES:
        report.add(
            (*loc, "connection"),
            f"{step.get('type')} steps run in a warehouse; '{name}' is {conn.kind}",
            f"point 'connection' at a {', '.join(WAREHOUSES)} connection",
        )


def _check_incremental(
    step: dict[str, Any], dest: DestinationSpec, conn: ConnectionBase, loc: Loc, report: _Report
) -> None:
    raw = step.get("incremental")
    if not isinstance(raw, dict):
        return
    try:
        spec = IncrementalSpec.model_validate(raw)
    except ValidationError:
        return  # reported by the model validation
    where = (*loc, "incremental")
    if not conn.keeps_state:
        report.add(
            where,
            f"a {conn.kind} destination cannot keep incremental state with its rows",
            "load incrementally into duckdb, postgres or bigquery",
        )
    if dest.write_mode == "replace":
        report.add(
            where,
            "an incremental step cannot use write_mode 'replace' (each run would keep only "
            "its window)",
            "use write_mode merge (or append); --full-refresh reloads everything",
        )
    elif dest.write_mode == "append":
        if spec.lookback_value():
            report.add(
                (*where, "lookback"),
                "lookback re-reads rows already loaded, which append would duplicate",
                "use write_mode merge with a primary_key, or remove lookback",
            )
        if spec.null_cursor == "load":
            report.add(
                (*where, "null_cursor"),
                "null_cursor 'load' reads NULL-cursor rows on every run, which append would "
                "duplicate",
                "use write_mode merge with a primary_key, or null_cursor skip",
            )


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


def _check_write_mode(
    dest: DestinationSpec, conn: ConnectionBase, loc: Loc, report: _Report
) -> None:
    if dest.write_mode not in conn.write_modes:
        report.add(
            (*loc, "write_mode"),
            f"write_mode '{dest.write_mode}' is not supported by a {conn.kind} destination",
            f"use one of: {', '.join(conn.write_modes)}",
        )
    elif dest.write_mode == "merge" and not dest.primary_key:
        # (not where merge is unsupported: the advice would contradict the line above)
        report.add(
            (*loc, "write_mode"),
            "write_mode 'merge' needs a primary_key",
            "add 'primary_key: [id]' (the columns that identify a row)",
        )
