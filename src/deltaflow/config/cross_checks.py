"""Checks across keys of a pipeline: unique step ids, connection references, which
destination options and write modes each connection type takes, and incremental settings.
(Which options a source takes is its model's: see ``deltaflow.config.sources``.)

They run on the raw (rendered) steps, so a step with some other mistake is still checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from deltaflow.config._report import Loc, Report, mapping
from deltaflow.config._yaml import format_path
from deltaflow.config.connections import Connection, ConnectionBase, Role, warehouse_types
from deltaflow.config.models import DestinationSpec, IncrementalSpec
from deltaflow.errors import did_you_mean

Connections = dict[str, ConnectionBase | None]

_CONNECTION = TypeAdapter(Connection)


def connections(data: dict[str, Any]) -> Connections:
    """Every defined connection: its model when it is valid on its own, else None."""
    found: Connections = {}
    for name, value in mapping(data.get("connections")).items():
        try:
            found[str(name)] = _CONNECTION.validate_python(value)
        except ValidationError:
            found[str(name)] = None  # defined, but reported already
    return found


def cross_check(data: dict[str, Any], connections: Connections, report: Report) -> None:
    """Checks across keys: unique step ids, connection references, options per type."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return
    seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        _check_step_id(step.get("step_id"), index, seen, report)
        if step.get("type") == "sync":
            _check_sync(connections, step, ("steps", index), report)
        elif step.get("type") in ("quality", "metrics"):
            _check_quality(connections, step, ("steps", index), report)


def _check_step_id(step_id: Any, index: int, seen: dict[str, int], report: Report) -> None:
    """A step id used by an earlier step; ``seen`` maps each id to its first step."""
    if not isinstance(step_id, str):
        return
    if step_id in seen:
        report.add(
            ("steps", index, "step_id"),
            f"duplicate step_id '{step_id}' (also steps[{seen[step_id]}])",
            "give every step a unique step_id",
        )
    seen.setdefault(step_id, index)


def _check_sync(connections: Connections, step: dict[str, Any], loc: Loc, report: Report) -> None:
    """Each source and the destination of a sync step against its connection."""
    roles: list[tuple[Role, Any, Loc]] = [
        (role, step.get(role), (*loc, role)) for role in ("source", "destination")
    ]
    if isinstance(step.get("sources"), list):
        roles += [("source", raw, (*loc, "sources", i)) for i, raw in enumerate(step["sources"])]
    for role, raw, where in roles:
        name = raw.get("connection") if isinstance(raw, dict) else None
        if not isinstance(name, str):
            continue  # missing or not a name: reported by the model validation
        conn = _connection(connections, name, (*where, "connection"), report)
        if conn is None:
            continue
        if role == "source":
            if _can_be(conn, role, name, where, report):  # its options are its model's
                _check_place(conn, role, raw, where, report)
            continue
        try:
            spec = DestinationSpec.model_validate(raw)
        except ValidationError:
            continue  # reported by the model validation; what follows would be noise
        if not _can_be(conn, role, name, where, report):
            continue
        _check_options(spec, conn, where, report)
        _check_place(conn, role, raw, where, report)
        _check_write_mode(spec, conn, where, report)
        _check_incremental(step, spec, conn, loc, report)


def _can_be(conn: ConnectionBase, role: str, name: str, where: Loc, report: Report) -> bool:
    """Whether the connection can be a ``role`` at all; reported when it cannot."""
    if conn.source_model if role == "source" else conn.destination_options:
        return True
    report.add(
        (*where, "connection"),
        f"connection '{name}' is {conn.kind}, which cannot be a {role}",
        f"use a connection of another type as the {role}",
    )
    return False


def _check_place(
    conn: ConnectionBase, role: Role, raw: Mapping[str, Any], where: Loc, report: Report
) -> None:
    """Where the source reads or the destination writes, as its connection sees it."""
    problem = conn.place_problem(role, raw)
    if problem is not None:
        key, message, fix = problem
        report.add((*where, key), message, fix)


def _check_options(spec: DestinationSpec, conn: ConnectionBase, where: Loc, report: Report) -> None:
    """The destination's options against those its connection type takes."""
    allowed = conn.destination_options
    fields = DestinationSpec.model_fields
    given = {fields[f].alias or f for f in spec.model_fields_set} - {"connection"}
    for option in sorted(given - allowed):
        report.add(
            (*where, option),
            f"'{option}' does not apply to a {conn.kind} destination",
            f"{conn.kind} destinations take: {', '.join(sorted(allowed))}",
        )
    for one_of in conn.required_destination:
        if not given & one_of:
            keys = " or ".join(f"'{k}'" for k in sorted(one_of))
            report.add(
                where,
                f"a {conn.kind} destination needs {keys}",
                f"add {keys} under {format_path(where)}",
            )


def _check_quality(
    connections: Connections, step: dict[str, Any], loc: Loc, report: Report
) -> None:
    """A quality or metrics step's connection, which must be a warehouse."""
    name = step.get("connection")
    if not isinstance(name, str):
        return  # reported by the model validation
    conn = _connection(connections, name, (*loc, "connection"), report)
    if conn is not None and not conn.is_warehouse:
        report.add(
            (*loc, "connection"),
            f"{step.get('type')} steps run in a warehouse; '{name}' is {conn.kind}",
            f"point 'connection' at a {', '.join(warehouse_types())} connection",
        )
    elif conn is not None and "table" in step:
        _check_place(conn, "source", {"table": step["table"]}, loc, report)


def _check_incremental(
    step: dict[str, Any], dest: DestinationSpec, conn: ConnectionBase, loc: Loc, report: Report
) -> None:
    """Incremental settings against the destination and its write mode."""
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
        _check_append(spec, where, report)


def _check_append(spec: IncrementalSpec, where: Loc, report: Report) -> None:
    """Incremental settings that re-read rows, which an append would duplicate."""
    if spec.lookback_value():
        report.add(
            (*where, "lookback"),
            "lookback re-reads rows already loaded, which append would duplicate",
            "use write_mode merge with a primary_key, or remove lookback",
        )
    if spec.null_cursor == "load":
        report.add(
            (*where, "null_cursor"),
            "null_cursor 'load' reads NULL-cursor rows on every run, which append would duplicate",
            "use write_mode merge with a primary_key, or null_cursor skip",
        )


def _connection(
    connections: Connections, name: str, loc: Loc, report: Report
) -> ConnectionBase | None:
    """The connection ``name`` refers to; one that is not defined is reported."""
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
    dest: DestinationSpec, conn: ConnectionBase, loc: Loc, report: Report
) -> None:
    """The write mode against those the destination supports, and merge's primary key."""
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
