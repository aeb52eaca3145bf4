"""`{name}` variables: layers and precedence, context variables, escapes, errors."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from deltaflow.config import LoadedPipeline, RunContext, load_pipeline, validate_file
from deltaflow.config.variables import parse_assignments, render
from deltaflow.errors import ConfigError, ConfigValidationError, Diagnostic, VariableError

STARTED = dt.datetime(2026, 2, 1, 6, 30, tzinfo=dt.UTC)
CONTEXT = RunContext(
    tenant_id="acme", run_id="run42", started_at=STARTED, run_date=dt.date(2026, 1, 31)
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def pipeline(
    *,
    top: str = "pipeline_id: orders",
    variables: str = "",
    step_variables: str = "",
    table: str = "raw.orders",
    where: str | None = None,
) -> str:
    """A one-step pipeline text; ``variables``/``step_variables`` are YAML flow mappings."""
    lines = [top]
    if variables:
        lines.append(f"variables: {variables}")
    lines += [
        "connections:",
        "  warehouse: {type: duckdb, path: ':memory:'}",
        "steps:",
        "  - step_id: copy",
        "    type: sync",
    ]
    if step_variables:
        lines.append(f"    variables: {step_variables}")
    source = "{connection: warehouse, table: src" + (f", where: {where!r}" if where else "") + "}"
    lines += [
        f"    source: {source}",
        f"    destination: {{connection: warehouse, table: {table!r}}}",
    ]
    return "\n".join(lines) + "\n"


def load(tmp_path: Path, text: str, **cli: str) -> LoadedPipeline:
    return load_pipeline(write(tmp_path, text), cli_vars=cli, context=CONTEXT)


def table_of(loaded: LoadedPipeline) -> str | None:
    return loaded.pipeline.steps[0].destination.table


def problems(tmp_path: Path, text: str, **cli: str) -> list[Diagnostic]:
    with pytest.raises(ConfigValidationError) as info:
        load(tmp_path, text, **cli)
    return info.value.diagnostics


# --------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("variables", "step_variables", "cli", "expected"),
    [
        ("", "", {}, "acme"),  # run context
        ("{tenant_id: pipe}", "", {}, "pipe"),  # pipeline variables beat the context
        ("{tenant_id: pipe}", "{tenant_id: step}", {}, "step"),  # step beats pipeline
        ("{tenant_id: pipe}", "{tenant_id: step}", {"tenant_id": "cli"}, "cli"),  # --var last
        ("", "", {"tenant_id": "cli"}, "cli"),
    ],
)
def test_precedence_later_layers_win(
    tmp_path: Path, variables: str, step_variables: str, cli: dict[str, str], expected: str
) -> None:
    text = pipeline(variables=variables, step_variables=step_variables, table="t_{tenant_id}")
    assert table_of(load(tmp_path, text, **cli)) == f"t_{expected}"


def test_step_variables_apply_to_their_own_step_only(tmp_path: Path) -> None:
    text = pipeline(variables="{who: pipe}", step_variables="{who: step}", table="{who}")
    second = """\
      - step_id: other
        type: sync
        source: {connection: warehouse, table: src}
        destination: {connection: warehouse, table: '{who}'}
    """
    loaded = load(tmp_path, text + textwrap.indent(textwrap.dedent(second), "  "))
    assert [s.destination.table for s in loaded.pipeline.steps] == ["step", "pipe"]


def test_step_variables_can_use_pipeline_variables(tmp_path: Path) -> None:
    text = pipeline(variables="{schema: raw}", step_variables="{target: '{schema}.o'}")
    assert table_of(load(tmp_path, text.replace("raw.orders", "{target}"))) == "raw.o"


def test_pipeline_variables_can_use_those_defined_above_them(tmp_path: Path) -> None:
    text = pipeline(variables="{schema: raw, target: '{schema}.orders'}", table="{target}")
    assert table_of(load(tmp_path, text)) == "raw.orders"


def test_a_variable_defined_below_its_use_is_unresolved(tmp_path: Path) -> None:
    text = pipeline(variables="{target: '{schema}.orders', schema: raw}", table="{target}")
    [d] = problems(tmp_path, text)
    assert d.path == "variables.target"
    assert d.message == "unresolved variable '{schema}'."
    assert d.hint is not None
    assert "above any variable that uses it" in d.hint


def test_cli_var_is_used_even_where_a_pipeline_variable_refers_to_it(tmp_path: Path) -> None:
    text = pipeline(variables="{region: eu, target: 'raw_{region}'}", table="{target}_{region}")
    # the pipeline variable 'target' was rendered with the file's region; --var wins after
    assert table_of(load(tmp_path, text, region="us")) == "raw_eu_us"


def test_loaded_variables_hold_the_pipeline_layer(tmp_path: Path) -> None:
    text = pipeline(variables="{schema: raw, limit: 5}", step_variables="{only_step: x}")
    values = dict(load(tmp_path, text, extra="1").variables)
    assert values == {
        "tenant_id": "acme",
        "run_id": "run42",
        "run_date": "2026-02-01T06:30:00+00:00",
        "date": "2026-01-31",
        "pipeline_id": "orders",
        "schema": "raw",
        "limit": 5,
        "extra": "1",
    }


# --------------------------------------------------------------------------- context


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tenant_id", "acme"),
        ("pipeline_id", "orders"),
        ("run_id", "run42"),
        ("run_date", "2026-02-01T06:30:00+00:00"),
        ("date", "2026-01-31"),
    ],
)
def test_context_variables(tmp_path: Path, name: str, expected: str) -> None:
    text = pipeline(table=f"t_{{{name}}}")
    assert table_of(load(tmp_path, text)) == f"t_{expected}"


def test_date_defaults_to_the_day_the_run_started() -> None:
    started = dt.datetime(2026, 3, 4, 23, 59, tzinfo=dt.UTC)
    values = RunContext(started_at=started).variables()
    assert values["date"] == "2026-03-04"
    assert values["run_date"] == "2026-03-04T23:59:00+00:00"  # the start time, not a date


def test_a_given_run_date_sets_date_and_keeps_the_start_time() -> None:
    started = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
    values = RunContext(started_at=started, run_date=dt.date(2025, 12, 31)).variables()
    assert values["date"] == "2025-12-31"
    assert values["run_date"] == "2026-03-04T12:00:00+00:00"


def test_each_context_gets_its_own_run_id() -> None:
    assert RunContext().run_id != RunContext().run_id


def test_pipeline_variables_can_use_context_variables(tmp_path: Path) -> None:
    text = pipeline(variables="{target: '{tenant_id}_{date}'}", table="raw.{target}")
    assert table_of(load(tmp_path, text)) == "raw.acme_2026-01-31"


def test_pipeline_variables_can_use_the_pipeline_id(tmp_path: Path) -> None:
    text = pipeline(variables="{target: '{pipeline_id}_copy'}", table="raw.{target}")
    assert table_of(load(tmp_path, text)) == "raw.orders_copy"


def test_pipeline_id_can_use_variables(tmp_path: Path) -> None:
    text = pipeline(
        top="pipeline_id: '{tenant_id}-{kind}'",
        variables="{kind: orders}",
        table="raw.{pipeline_id}",
    )
    loaded = load(tmp_path, text)
    assert loaded.pipeline.pipeline_id == "acme-orders"
    assert table_of(loaded) == "raw.acme-orders"


# --------------------------------------------------------------------------- escapes, runtime


def test_double_braces_are_literal_braces(tmp_path: Path) -> None:
    text = pipeline(table="t_{{tenant_id}}_{tenant_id}")
    assert table_of(load(tmp_path, text)) == "t_{tenant_id}_acme"


def test_escaped_braces_in_a_variable_stay_literal_where_it_is_used(tmp_path: Path) -> None:
    text = pipeline(variables="{json: 'a{{b}}c'}", table="{json}")
    assert table_of(load(tmp_path, text)) == "a{b}c"


def test_window_placeholders_are_left_for_the_step(tmp_path: Path) -> None:
    where = "ts >= '{start_timestamp}' AND ts < '{end_timestamp}' AND tenant = '{tenant_id}'"
    loaded = load(tmp_path, pipeline(where=where))
    assert loaded.pipeline.steps[0].source.where == (
        "ts >= '{start_timestamp}' AND ts < '{end_timestamp}' AND tenant = 'acme'"
    )


def test_render_directly() -> None:
    assert render("{a}-{{a}}-{b}", {"a": 1, "b": "x"}) == "1-{a}-x"
    assert render("{start_timestamp}", {}) == "{start_timestamp}"
    assert render("{ not a name }", {}) == "{ not a name }"


# --------------------------------------------------------------------------- errors


def test_unresolved_variable_raises_with_its_name() -> None:
    with pytest.raises(VariableError) as info:
        render("raw.{tabel}", {"table": "x", "tenant_id": "acme"})
    error = info.value
    assert isinstance(error, ConfigError)
    assert error.code == "CONFIG_VARIABLE_UNRESOLVED"
    assert error.message == "unresolved variable '{tabel}'. Did you mean 'table'?"
    assert error.hint is not None
    assert "--var tabel=VALUE" in error.hint
    assert "(defined here: table, tenant_id)" in error.hint


def test_unresolved_variable_in_a_file_names_it_and_its_place(tmp_path: Path) -> None:
    path = write(tmp_path, pipeline(table="{nope}"))
    [d] = validate_file(path)
    assert (d.file, d.line, d.path) == (str(path), 8, "steps[0].destination.table")
    assert d.message == "unresolved variable '{nope}'."


def test_every_unresolved_variable_is_reported(tmp_path: Path) -> None:
    text = pipeline(variables="{a: '{x}'}", step_variables="{b: '{y}'}", table="{z}")
    found = {(d.path, d.message) for d in problems(tmp_path, text)}
    assert found == {
        ("variables.a", "unresolved variable '{x}'."),
        ("steps[0].variables.b", "unresolved variable '{y}'."),
        ("steps[0].destination.table", "unresolved variable '{z}'."),
    }


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", "b=x=y", "empty="]) == {"a": "1", "b": "x=y", "empty": ""}
    assert parse_assignments([]) == {}


@pytest.mark.parametrize("pair", ["novalue", "=x", "1a=x", "a b=x"])
def test_parse_assignments_rejects_what_is_not_name_value(pair: str) -> None:
    with pytest.raises(VariableError) as info:
        parse_assignments([pair])
    assert info.value.message == f"--var '{pair}' is not NAME=VALUE"
    assert info.value.hint == "write --var name=value, e.g. --var date=2026-01-31"
