"""``{name}`` variables in pipeline files.

Layers, later wins: run context (``tenant_id``, ``pipeline_id``, ``run_id``, ``run_date``,
``date``), pipeline ``variables``, step ``variables``, CLI ``--var name=value``. A pipeline
or step variable may use the layers below it and the variables above it in its own layer.
``{{`` and ``}}`` stand for literal braces. ``{start_timestamp}`` and ``{end_timestamp}``
are left in place: the incremental window fills them in when a step runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from deltaflow.errors import VariableError, did_you_mean

Scalar = str | int | float | bool

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Placeholders filled in at run time by the step itself, not by variables.
RUNTIME_PLACEHOLDERS = frozenset({"start_timestamp", "end_timestamp"})

CONTEXT_VARIABLES = ("tenant_id", "pipeline_id", "run_id", "run_date", "date")


#: The longest value rendering may produce, and the most characters it may produce for
#: one pipeline file in all: far above any real pipeline, they stop variables that double
#: each other (``v1: '{v0}{v0}'``, ``v2: '{v1}{v1}'``, ...) from filling the memory.
MAX_VALUE_CHARS = 1_000_000
MAX_TOTAL_CHARS = 10_000_000


class Budget:
    """The characters rendering may still produce for one pipeline file."""

    def __init__(self, limit: int = MAX_TOTAL_CHARS) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, produced: int) -> None:
        self.left -= produced
        if self.left < 0:
            raise VariableError(
                f"variables expand to more than {self.limit:,} characters in this file",
                hint="variables are for names, dates and short fragments: check for a "
                "variable repeated many times, or variables that double each other",
            )


def render(text: str, variables: Mapping[str, Any], budget: Budget | None = None) -> str:
    """Replace every ``{name}`` in ``text``; an unknown name, a result longer than
    MAX_VALUE_CHARS or one past the ``budget`` raises VariableError."""
    size = len(text)

    def substitute(match: re.Match[str]) -> str:
        nonlocal size
        token, name = match.group(0), match.group(1)
        if name is None:
            return token[0]
        if name in variables:
            value = str(variables[name])
            size += len(value) - len(token)
            if size > MAX_VALUE_CHARS:
                raise VariableError(
                    f"'{{{name}}}' makes this value longer than the limit of "
                    f"{MAX_VALUE_CHARS:,} characters",
                    hint="check for variables that double each other "
                    "(v1: '{v0}{v0}', v2: '{v1}{v1}', ...) or a very long --var value",
                )
            return value
        if name in RUNTIME_PLACEHOLDERS:
            return token
        known = sorted(variables)
        raise VariableError(
            f"unresolved variable '{{{name}}}'.{did_you_mean(name, known)}",
            hint=f"define '{name}' under 'variables:' (above any variable that uses it) "
            f"or pass --var {name}=VALUE "
            f"(defined here: {', '.join(known) or 'none'}); write '{{{{' for a literal brace",
        )

    rendered = _TOKEN.sub(substitute, text)
    if budget is not None and rendered != text:
        budget.spend(len(rendered))
    return rendered


def render_tree(
    value: Any,
    variables: Mapping[str, Any],
    on_error: Callable[[tuple[str | int, ...], VariableError], None],
    path: tuple[str | int, ...] = (),
    budget: Budget | None = None,
) -> Any:
    """Render every string inside dicts and lists; errors go to ``on_error`` with their path."""
    if isinstance(value, str):
        try:
            return render(value, variables, budget)
        except VariableError as exc:
            on_error(path, exc)
            return value
    if isinstance(value, dict):
        return {
            k: render_tree(v, variables, on_error, (*path, k), budget) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            render_tree(v, variables, on_error, (*path, i), budget) for i, v in enumerate(value)
        ]
    return value


def layer(
    base: Mapping[str, Any],
    own: Mapping[str, Any],
    on_error: Callable[[tuple[str | int, ...], VariableError], None],
    path: tuple[str | int, ...],
    budget: Budget | None = None,
) -> dict[str, Any]:
    """``base`` overlaid with ``own``; a value may use the names in ``base`` and those above it."""
    out = dict(base)
    for name, value in own.items():
        out[name] = render_tree(value, out, on_error, (*path, name), budget)
    return out


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise VariableError(
                f"--var '{pair}' is not NAME=VALUE",
                hint="write --var name=value, e.g. --var date=2026-01-31",
            )
        out[name] = value
    return out
