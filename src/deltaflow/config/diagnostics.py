"""Validation problems as Diagnostics: pydantic's errors and unknown type tags, each
turned into a message at the file, line and key path, with a hint and 'did you mean'."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from deltaflow.config._report import Loc, Report
from deltaflow.config._yaml import format_path
from deltaflow.config.connections import CONNECTION_MODELS, connection_kinds
from deltaflow.config.models import STEP_TYPES, Pipeline, source_models
from deltaflow.config.sources import (
    NEEDS,
    SOURCE_TAGS,
    SourceBase,
    all_options,
    selecting,
    source_tag,
)
from deltaflow.errors import did_you_mean

# --------------------------------------------------------------------------- type tags


def check_types(data: dict[str, Any], report: Report) -> None:
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
    item: dict[str, Any], loc: Loc, choices: Iterable[str], what: str, report: Report
) -> None:
    """A missing or unknown ``type`` of one connection or step."""
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


# --------------------------------------------------------------------------- pydantic errors


def validate(data: dict[str, Any], report: Report) -> Pipeline | None:
    """The pipeline, or None with every validation error reported."""
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            _report_pydantic(error, data, report)
        return None


def _report_pydantic(error: Any, data: Any, report: Report) -> None:
    """One pydantic error as a diagnostic, unless it is reported elsewhere or moot."""
    loc = _strip_tags(tuple(error["loc"]), data)
    kind, value = error["type"], error.get("input")
    if kind in ("union_tag_invalid", "union_tag_not_found") or (
        loc and loc[-1] == "type" and kind == "literal_error"
    ):
        return  # reported by check_types with 'did you mean'
    if loc in report.flagged:
        return  # holds an unresolved {variable} or secret, reported already
    source = _source_at(tuple(error["loc"]), data)
    if source is not None and kind in ("extra_forbidden", NEEDS) and len(loc) - len(source[1]) < 2:
        _report_source(loc, error, source, data, report)
    elif (loc and loc[-1] == "[key]") or kind == "invalid_key":
        _report_key(loc, value, report)
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
        _report_choice(loc, value, error.get("ctx", {}).get("expected", ""), report)
    else:
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        message = f"{error['msg'][0].lower()}{error['msg'][1:]}{shown}"
        report.add(loc, message, _hint_for(kind, error.get("ctx") or {}, value))


_Source = tuple[type[SourceBase], Loc, Any]


def _report_source(loc: Loc, error: Any, source: _Source, data: Any, report: Report) -> None:
    """A key a source does not take, or options it needs, in the words of its connection's
    type; moot when that type is not known (the connection is reported)."""
    model, _, value = source
    kind = _source_kind(model, value, data)
    taken = ", ".join(model.options())
    if error["type"] == NEEDS:
        needs = error["ctx"]["options"]
        if kind:
            hint = f"add {needs} under {format_path(loc)}"
            report.add(loc, f"a {kind} source needs {needs}", hint)
        return
    key = str(loc[-1])
    if key not in all_options():
        close = did_you_mean(key, model.options()) or did_you_mean(key, all_options())
        report.add(loc, f"unknown key '{key}'.{close}", f"valid keys here: connection, {taken}")
    elif kind:
        message = f"'{key}' does not apply to a {kind} source"
        report.add(loc, message, f"{kind} sources take: {taken}")


def _source_kind(model: type[SourceBase], value: Any, data: Any) -> str | None:
    """The type of the source's connection, when it is the type ``model`` was chosen for."""
    name = value.get("connection") if isinstance(value, dict) else None
    kind = connection_kinds(data).get(name) if isinstance(name, str) else None
    return kind if kind and CONNECTION_MODELS[kind].source_model is model else None


def _report_key(loc: Loc, value: Any, report: Report) -> None:
    """A mapping key that is not a string (YAML read 1, yes or a date)."""
    loc = loc[:-1] if loc and loc[-1] == "[key]" else loc
    report.add(
        (*loc[:-1], str(value)),  # shown as a key, not as a list index
        f"key {value!r} is not a string",
        "put the key in quotes: YAML reads unquoted 1, yes, no, on, off and dates "
        "as numbers, booleans and dates",
        line=report.doc.line_of(loc),
    )


def _report_choice(loc: Loc, value: Any, expected: str, report: Report) -> None:
    """A value that is not one of the choices pydantic lists in ``expected``."""
    choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
    report.add(
        loc,
        f"invalid value {value!r}.{did_you_mean(str(value), choices)}",
        f"use one of: {', '.join(c for c in choices if c)}",
    )


_PATTERN_HINTS = {
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$": "use letters, digits, '_', '-' and '.' only, "
    "starting with a letter, digit or '_'",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "use letters, digits and '_' only, starting with a letter or '_'",
    r"^\d+(\.\d+)?\s*[KMGT]i?B$": "write a size such as '512MB', '1GB' or '2GiB'",
}


def _hint_for(kind: str, ctx: Mapping[str, Any], value: Any) -> str | None:
    """The fix for one kind of pydantic error, when there is a general one."""
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


# --------------------------------------------------------------------------- key paths


def _strip_tags(loc: Loc, data: Any) -> Loc:
    """Drop the discriminator tags pydantic inserts into error locations."""
    out: list[str | int] = []
    current = data
    for part in loc:
        if _is_tag(current, part):
            continue
        out.append(part)
        current = _child(current, part)
    return tuple(out)


def _is_tag(data: Any, part: str | int) -> bool:
    """Whether ``part`` of an error location is a tag pydantic chose ``data``'s model by:
    its ``type``, or the family of a source."""
    if isinstance(data, dict) and part in data:
        return False
    source = isinstance(part, str) and part in SOURCE_TAGS
    return source or (isinstance(data, dict) and data.get("type") == part)


def _source_at(loc: Loc, data: Any) -> _Source | None:
    """The source an error location passes through: its model, key path and value."""
    out: list[str | int] = []
    current = data
    for part in loc:
        if _is_tag(current, part):
            if isinstance(part, str) and part in SOURCE_TAGS:
                return SOURCE_TAGS[part], tuple(out), current
            continue
        out.append(part)
        current = _child(current, part)
    return None


def _child(data: Any, part: str | int) -> Any:
    """The value at ``part`` of a mapping or list, else None."""
    if isinstance(data, dict):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and part < len(data):
        return data[part]
    return None


def _fields_at(loc: Loc, data: Any) -> list[str]:
    """The keys the model at ``loc`` accepts."""
    with selecting(source_models(data)):
        model = _model_at(loc, data)
    return sorted(model.model_fields) if model else []


def _model_at(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The model that validates the value at ``loc``, following type tags in ``data``."""
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
        data = _child(data, part)
    current = _unwrap(current, data)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any, data: Any) -> Any:
    """Annotated[X] -> X; a union -> the member whose type tag matches ``data``, or the
    family of sources that validates it."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    members = [_unwrap(m, data) for m in typing.get_args(annotation) if m is not type(None)]
    if len(members) == 1:
        return _unwrap(members[0], data)
    if all(isinstance(m, type) and issubclass(m, SourceBase) for m in members):
        return SOURCE_TAGS.get(source_tag(data) or "")
    tag = data.get("type") if isinstance(data, dict) else None
    for member in members:
        fields = getattr(member, "model_fields", {})
        if "type" in fields and tag in typing.get_args(fields["type"].annotation):
            return member
    return None
