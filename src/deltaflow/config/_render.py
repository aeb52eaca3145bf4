"""Variables rendered into a pipeline's raw data, and its secret references checked.

Variables resolve in this order, later wins: the run context, the pipeline's
``variables``, the step's ``variables``, ``--var``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deltaflow.config import secrets, variables
from deltaflow.config._report import Loc, Report, mapping
from deltaflow.errors import VariableError

_OnError = Callable[[Loc, VariableError], None]


def render(
    data: dict[str, Any], base: dict[str, str], cli: dict[str, str], report: Report
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data with every ``{variable}`` rendered, and the pipeline-level variables.

    ``base`` holds the run context's variables; a variable that does not resolve is
    reported (and its value flagged as moot to validate).
    """

    def on_error(loc: Loc, exc: VariableError) -> None:
        report.add(loc, exc.message, exc.hint, flag=True)

    budget = variables.Budget()
    pipeline_id = _pipeline_id(data, base, cli, on_error)
    own = mapping(data.get("variables"))
    pipeline_vars = {**variables.layer(base, own, on_error, ("variables",), budget), **cli}
    if pipeline_id is not None:
        pipeline_vars["pipeline_id"] = pipeline_id  # always the id of the pipeline itself
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "pipeline_id" and pipeline_id is not None:
            out[key] = pipeline_id
        elif key == "steps" and isinstance(value, list):
            out[key] = [
                _render_step(s, i, pipeline_vars, cli, on_error, budget)
                for i, s in enumerate(value)
            ]
        elif key == "variables":
            out[key] = value
        else:
            out[key] = variables.render_tree(value, pipeline_vars, on_error, (key,), budget)
    return out, pipeline_vars


def _pipeline_id(
    data: dict[str, Any], base: dict[str, str], cli: dict[str, str], on_error: _OnError
) -> str | None:
    """The rendered pipeline id (also set in ``base``), or None when it is not a string.

    The id may use the context, the pipeline's variables and --var; once rendered, the
    pipeline's variables may use {pipeline_id} in turn.
    """

    def ignore(loc: Loc, exc: VariableError) -> None:
        pass

    raw_id = data.get("pipeline_id")
    if not isinstance(raw_id, str):
        return None
    own = mapping(data.get("variables"))
    draft = {**variables.layer(base, own, ignore, ("variables",), variables.Budget()), **cli}
    pipeline_id: str = variables.render_tree(raw_id, draft, on_error, ("pipeline_id",))
    base["pipeline_id"] = pipeline_id
    return pipeline_id


def _render_step(
    step: Any,
    index: int,
    pipeline_vars: dict[str, Any],
    cli: dict[str, str],
    on_error: _OnError,
    budget: variables.Budget,
) -> Any:
    """One step rendered with its own variables layered over the pipeline's."""
    if not isinstance(step, dict):
        return step
    own = mapping(step.get("variables"))
    step_vars = {
        **variables.layer(pipeline_vars, own, on_error, ("steps", index, "variables"), budget),
        **cli,
    }
    return {
        key: value
        if key == "variables"
        else variables.render_tree(value, step_vars, on_error, ("steps", index, key), budget)
        for key, value in step.items()
    }


_SECRET_HINT = (
    f"valid providers: {', '.join(secrets.PROVIDERS)}; write ${{env:NAME}} or ${{file:path}}"
)


def mark_references(value: Any, report: Report, loc: Loc = ()) -> None:
    """Note every value that is a secret reference: left unresolved, its value is unknown."""
    if isinstance(value, str) and secrets.has_reference(value):
        report.unresolved.add(loc)
    elif isinstance(value, dict):
        for key, item in value.items():
            mark_references(item, report, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            mark_references(item, report, (*loc, index))


def check_secrets(value: Any, report: Report, loc: Loc = ()) -> None:
    """Report every malformed secret reference (unknown provider, bad syntax)."""
    if isinstance(value, str):
        for problem in secrets.check(value):
            report.add(loc, problem, _SECRET_HINT, flag=True)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_secrets(item, report, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_secrets(item, report, (*loc, index))
