"""`deltaflow validate`: every kind of config mistake is reported with file, line, key path and fix.

Most tests start from VALID and change one thing in it; the comments on its lines are the
line numbers the assertions refer to.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deltaflow.cli import app
from deltaflow.config import validate_file
from deltaflow.errors import Diagnostic

VALID = """\
pipeline_id: orders               #  1
connections:                      #  2
  files_in:                       #  3
    type: files                   #  4
    base_path: data               #  5
  warehouse:                      #  6
    type: duckdb                  #  7
    path: warehouse.duckdb        #  8
steps:                            #  9
  - step_id: load_orders          # 10
    type: sync                    # 11
    source:                       # 12
      connection: files_in        # 13
      path: orders.parquet        # 14
    destination:                  # 15
      connection: warehouse       # 16
      table: raw.orders           # 17
      write_mode: append          # 18
"""


def write(tmp_path: Path, text: str, name: str = "pipeline.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def variant(old: str, new: str, text: str = VALID) -> str:
    """VALID with the one occurrence of ``old`` replaced by ``new``."""
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def one(diagnostics: list[Diagnostic], path: str) -> Diagnostic:
    """The only diagnostic at key path ``path``."""
    found = [d for d in diagnostics if d.path == path]
    assert len(found) == 1, f"expected one diagnostic at {path!r}, got {diagnostics}"
    return found[0]


def check(tmp_path: Path, text: str) -> tuple[str, list[Diagnostic]]:
    """Write ``text`` and validate it: (the file name diagnostics use, the diagnostics)."""
    path = write(tmp_path, text)
    return str(path), validate_file(path)


# --------------------------------------------------------------------------- each kind


def test_valid_file_gives_no_diagnostics(tmp_path: Path) -> None:
    assert check(tmp_path, VALID)[1] == []


def test_yaml_syntax_error(tmp_path: Path) -> None:
    file, found = check(
        tmp_path,
        """\
        pipeline_id: orders
        steps:
          - step_id: load_orders
           type: sync
        """,
    )
    [d] = found
    assert (d.file, d.line, d.path) == (file, 4, "")
    assert d.message.startswith("invalid YAML:")
    assert d.hint is not None
    assert "indentation" in d.hint


def test_duplicate_key_in_a_mapping(tmp_path: Path) -> None:
    text = variant("      table: raw.orders ", "      table: raw.orders\n      table: raw.other ")
    file, found = check(tmp_path, text)
    [d] = found
    assert (d.file, d.line, d.path) == (file, 18, "steps[0].destination.table")
    assert d.message == "duplicate key 'table' (first defined on line 17)"
    assert d.hint == "remove one of them: YAML would silently keep only the last"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("- pipeline_id: orders\n- steps: []\n", "a list"),
        ("just some words\n", "a string"),
        ("", "an empty file"),
    ],
)
def test_top_level_not_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    file, diagnostics = check(tmp_path, text)
    [d] = diagnostics
    assert (d.file, d.line, d.path) == (file, 1, "")
    assert d.message == f"a pipeline file must be a mapping with pipeline_id and steps, not {found}"
    assert d.hint == "start the file with 'pipeline_id: my_pipeline', then 'steps:'"


def test_unknown_key_with_did_you_mean(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("table: raw.orders", "tabel: raw.orders"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 17, "steps[0].destination.tabel")
    assert d.message == "unknown key 'tabel'. Did you mean 'table'?"
    assert d.hint == (
        "valid keys here: cluster_by, connection, drop_existing, format, indexes, nested, "
        "on_schema_change, partition_by, path, primary_key, table, write_mode"
    )


def test_unknown_key_in_a_connection_lists_that_types_keys(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("base_path: data", "basepath: data"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 5, "connections.files_in.basepath")
    assert d.message == "unknown key 'basepath'. Did you mean 'base_path'?"
    assert d.hint == "valid keys here: base_path, description, type"


def test_unknown_connection_type_with_did_you_mean(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("type: duckdb", "type: duckbd"))
    [d] = found  # the steps using it are not reported again
    assert (d.file, d.line, d.path) == (file, 7, "connections.warehouse.type")
    assert d.message == "unknown connection type 'duckbd'. Did you mean 'duckdb'?"
    assert d.hint == "valid connection types: bigquery, duckdb, files, mongodb, postgres"


def test_connection_without_type(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("    type: duckdb ", "    # no type"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 6, "connections.warehouse")
    assert d.message == "connection has no 'type'"
    assert d.hint == "add 'type:' with one of: bigquery, duckdb, files, mongodb, postgres"


def test_unknown_step_type_with_did_you_mean(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("type: sync", "type: snyc"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 11, "steps[0].type")
    assert d.message == "unknown step type 'snyc'. Did you mean 'sync'?"
    assert d.hint == "valid step types: sync, quality, metrics"


def test_missing_required_key(tmp_path: Path) -> None:
    text = VALID[: VALID.index("    destination:")]
    file, found = check(tmp_path, text)
    [d] = found
    assert (d.file, d.line, d.path) == (file, 10, "steps[0].destination")
    assert d.message == "missing required key 'destination'"
    assert d.hint == "add 'destination:' under steps[0]"


def test_missing_option_the_connection_type_needs(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("      path: orders.parquet ", "      columns: [id]"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 12, "steps[0].source")
    assert d.message == "a files source needs 'path'"
    assert d.hint == "add 'path' under steps[0].source"


def test_wrong_value_type(tmp_path: Path) -> None:
    file, found = check(tmp_path, VALID + "    batch_size: lots\n")
    [d] = found
    assert (d.file, d.line, d.path) == (file, 19, "steps[0].batch_size")
    assert "valid integer" in d.message
    assert "(got 'lots')" in d.message
    assert d.hint == "write a value of the expected type"


def test_invalid_enum_value_lists_the_choices(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("write_mode: append", "write_mode: upsert"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 18, "steps[0].destination.write_mode")
    assert d.message == "invalid value 'upsert'."
    assert d.hint == "use one of: append, replace, merge"


def test_invalid_enum_value_with_did_you_mean(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("write_mode: append", "write_mode: apend"))
    d = one(found, "steps[0].destination.write_mode")
    assert (d.file, d.line) == (file, 18)
    assert d.message == "invalid value 'apend'. Did you mean 'append'?"
    assert d.hint == "use one of: append, replace, merge"


def test_reference_to_undefined_connection_with_did_you_mean(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("connection: warehouse", "connection: warehous"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 16, "steps[0].destination.connection")
    assert d.message == "connection 'warehous' is not defined. Did you mean 'warehouse'?"
    assert d.hint == "define it under 'connections:' (defined: files_in, warehouse)"


def test_unresolved_variable_with_did_you_mean(tmp_path: Path) -> None:
    text = variant("pipeline_id: orders ", "pipeline_id: orders\nvariables: {schema: raw}")
    text = variant("table: raw.orders ", "table: '{shema}.orders' ", text)
    file, found = check(tmp_path, text)
    [d] = found
    assert (d.file, d.line, d.path) == (file, 18, "steps[0].destination.table")
    assert d.message == "unresolved variable '{shema}'. Did you mean 'schema'?"
    assert d.hint is not None
    assert d.hint.startswith("define 'shema' under 'variables:'")
    assert "--var shema=VALUE" in d.hint
    assert "schema" in d.hint.split("defined here:")[1]


def test_unresolved_variable_is_not_reported_again_as_a_bad_value(tmp_path: Path) -> None:
    file, found = check(tmp_path, VALID + "    batch_size: '{rows}'\n")
    [d] = found  # not also "input should be a valid integer"
    assert (d.file, d.line, d.path) == (file, 19, "steps[0].batch_size")
    assert d.message == "unresolved variable '{rows}'."


def test_cli_variable_satisfies_a_reference(tmp_path: Path) -> None:
    path = write(tmp_path, variant("table: raw.orders ", "table: '{target}' "))
    assert one(validate_file(path), "steps[0].destination.table").message.startswith(
        "unresolved variable '{target}'"
    )
    assert validate_file(path, {"target": "raw.orders"}) == []


def test_invalid_secret_provider(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("path: warehouse.duckdb", "path: ${envv:DB_PATH}"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 8, "connections.warehouse.path")
    assert d.message == "unknown secret provider 'envv' in '${envv:DB_PATH}'. Did you mean 'env'?"
    assert d.hint == "valid providers: env, file; write ${env:NAME} or ${file:path}"


def test_secret_reference_that_names_nothing(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("path: warehouse.duckdb", "path: ${file:}"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 8, "connections.warehouse.path")
    assert d.message == "secret reference '${file:}' names nothing"
    assert d.hint == "valid providers: env, file; write ${env:NAME} or ${file:path}"


def test_merge_without_primary_key(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("write_mode: append", "write_mode: merge"))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 18, "steps[0].destination.write_mode")
    assert d.message == "write_mode 'merge' needs a primary_key"
    assert d.hint == "add 'primary_key: [id]' (the columns that identify a row)"


def test_merge_with_primary_key_is_valid(tmp_path: Path) -> None:
    text = variant("write_mode: append", "write_mode: merge\n      primary_key: [id]")
    assert check(tmp_path, text)[1] == []


def test_option_that_does_not_apply_to_the_connection_type(tmp_path: Path) -> None:
    text = variant("path: orders.parquet ", "path: orders.parquet\n      table: orders ")
    file, found = check(tmp_path, text)
    [d] = found
    assert (d.file, d.line, d.path) == (file, 15, "steps[0].source.table")
    assert d.message == "'table' does not apply to a files source"
    assert d.hint == "files sources take: columns, csv, format, limit, path, stream"


def test_write_mode_the_destination_does_not_support(tmp_path: Path) -> None:
    text = variant("connection: warehouse", "connection: files_in")
    text = variant("table: raw.orders", "path: out.parquet", text)
    file, found = check(tmp_path, variant("write_mode: append", "write_mode: merge", text))
    [d] = found  # and not also "needs a primary_key": files destinations take none
    assert (d.file, d.line, d.path) == (file, 18, "steps[0].destination.write_mode")
    assert d.message == "write_mode 'merge' is not supported by a files destination"
    assert d.hint == "use one of: append, replace"


def test_duplicate_step_id(tmp_path: Path) -> None:
    second_step = VALID[VALID.index("  - step_id") :]
    file, found = check(tmp_path, VALID + second_step)
    [d] = found
    assert (d.file, d.line, d.path) == (file, 19, "steps[1].step_id")
    assert d.message == "duplicate step_id 'load_orders' (also steps[0])"
    assert d.hint == "give every step a unique step_id"


def test_duplicate_step_id_is_found_when_a_duplicate_has_another_problem(tmp_path: Path) -> None:
    second_step = VALID[VALID.index("  - step_id") :] + "    batch_size: 0\n"
    file, found = check(tmp_path, VALID + second_step)
    d = one(found, "steps[1].step_id")
    assert (d.file, d.line) == (file, 19)
    assert d.message == "duplicate step_id 'load_orders' (also steps[0])"
    assert d.hint == "give every step a unique step_id"
    assert one(found, "steps[1].batch_size").line == 28


def test_value_out_of_range(tmp_path: Path) -> None:
    file, found = check(tmp_path, VALID + "    batch_size: 0\n")
    [d] = found
    assert (d.file, d.line, d.path) == (file, 19, "steps[0].batch_size")
    assert d.message == "input should be greater than or equal to 1 (got 0)"
    assert d.hint == "pick a value inside the allowed range"


def test_invalid_pipeline_id_characters(tmp_path: Path) -> None:
    file, found = check(tmp_path, variant("pipeline_id: orders ", "pipeline_id: my orders! "))
    [d] = found
    assert (d.file, d.line, d.path) == (file, 1, "pipeline_id")
    assert "(got 'my orders!')" in d.message
    assert (
        d.hint == "use letters, digits, '_', '-' and '.' only, starting with a letter, digit or '_'"
    )


def test_invalid_stream_name_has_its_own_hint(tmp_path: Path) -> None:
    text = variant("path: orders.parquet ", "path: orders.parquet\n      stream: my-orders ")
    file, found = check(tmp_path, text)
    [d] = found
    assert (d.file, d.line, d.path) == (file, 15, "steps[0].source.stream")
    assert d.hint == "use letters, digits and '_' only, starting with a letter or '_'"


def test_steps_must_not_be_empty(tmp_path: Path) -> None:
    file, found = check(tmp_path, VALID[: VALID.index("steps:")] + "steps: []\n")
    [d] = found
    assert (d.file, d.line, d.path) == (file, 9, "steps")
    assert d.hint == "add at least 1 item(s)"


def test_non_string_key(tmp_path: Path) -> None:
    file, found = check(tmp_path, VALID + "variables:\n  1: x\n")
    [d] = found
    assert (d.file, d.line, d.path) == (file, 20, "variables.1")
    assert d.message == "key 1 is not a string"
    assert d.hint is not None
    assert d.hint.startswith("put the key in quotes")


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    ("text", "line", "path", "message"),
    [
        ("pipeline_id: !!python/name:os.system x\n", 1, "", "invalid YAML: could not determine"),
        ("? [a, b]\n: 1\n", 1, "", "invalid YAML: found unhashable key"),
        ("pipeline_id: orders\nsteps: &loop [*loop]\n", 2, "steps[0]", "recursive alias"),
    ],
)
def test_yaml_that_python_cannot_take_is_a_diagnostic(
    tmp_path: Path, text: str, line: int, path: str, message: str
) -> None:
    file, found = check(tmp_path, text)
    [d] = found
    assert (d.file, d.line, d.path) == (file, line, path)
    assert d.message.startswith(message)
    assert d.hint


def test_steps_of_the_wrong_type_is_a_diagnostic(tmp_path: Path) -> None:
    file, found = check(tmp_path, VALID[: VALID.index("steps:")] + "steps: 5\n")
    [d] = found
    assert (d.file, d.line, d.path) == (file, 9, "steps")
    assert d.message == "input should be a valid list (got 5)"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("pipeline_id: caf\xe9\n".encode("latin-1"))
    [d] = validate_file(path)
    assert d.file == str(path)
    assert d.message.startswith("cannot read file: not UTF-8 text")
    assert d.hint == "pass an existing, readable pipeline file saved as UTF-8"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    [d] = validate_file(path)
    assert d.file == str(path)
    assert d.message == "cannot read file: No such file or directory"
    assert d.hint == "pass an existing, readable pipeline file saved as UTF-8"


# --------------------------------------------------------------------------- all at once

SEVERAL = """\
pipeline_id: orders
connections:
  warehouse:
    type: duckbd
  files_in:
    type: files
steps:
  - step_id: load_orders
    type: sync
    source:
      connection: files_in
      tabel: orders
    destination:
      connection: warehous
      table: raw.orders
      write_mode: upsert
    batch_size: 0
  - step_id: load_orders
    type: snyc
"""


def test_several_mistakes_are_reported_at_once(tmp_path: Path) -> None:
    file, found = check(tmp_path, SEVERAL)
    assert {d.file for d in found} == {file}
    where = {(d.path, d.line) for d in found}
    assert where == {
        ("connections.warehouse.type", 4),
        ("steps[0].source.tabel", 12),
        ("steps[0].destination.connection", 14),
        ("steps[0].destination.write_mode", 16),
        ("steps[0].batch_size", 17),
        ("steps[1].step_id", 18),
        ("steps[1].type", 19),
    }
    assert len(found) == len(where)
    assert all(d.hint for d in found)
    assert "Did you mean 'table'?" in one(found, "steps[0].source.tabel").message


def test_cross_checks_run_on_steps_with_other_problems(tmp_path: Path) -> None:
    text = variant("connection: warehouse", "connection: warehous", VALID + "    batch_size: 0\n")
    file, found = check(tmp_path, text)
    assert {(d.file, d.path, d.line) for d in found} == {
        (file, "steps[0].destination.connection", 16),
        (file, "steps[0].batch_size", 19),
    }


# --------------------------------------------------------------------------- the CLI


def test_cli_validate_prints_each_problem_and_exits_1(tmp_path: Path) -> None:
    text = variant("write_mode: append", "write_mode: merge", VALID + "    batch_size: 0\n")
    path = write(tmp_path, text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert (
        f"{path}:18: steps[0].destination.write_mode: write_mode 'merge' needs a primary_key "
        "Fix: add 'primary_key: [id]' (the columns that identify a row)"
    ) in lines
    assert (
        f"{path}:19: steps[0].batch_size: input should be greater than or equal to 1 (got 0) "
        "Fix: pick a value inside the allowed range"
    ) in lines
    assert "ok" not in result.stdout
    assert "2 problems in 1 file(s)" in result.stderr


def test_cli_validate_prints_ok_and_exits_0_for_a_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{path}: ok"]


def test_cli_validate_checks_every_file_given(tmp_path: Path) -> None:
    good = write(tmp_path, VALID, "good.yml")
    bad = write(tmp_path, variant("type: sync", "type: snyc"), "bad.yml")
    result = CliRunner().invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{good}: ok",
        f"{bad}:11: steps[0].type: unknown step type 'snyc'. Did you mean 'sync'? "
        "Fix: valid step types: sync, quality, metrics",
    ]


def test_cli_validate_takes_vars(tmp_path: Path) -> None:
    path = write(tmp_path, variant("table: raw.orders ", "table: '{target}' "))
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 1
    result = CliRunner().invoke(app, ["validate", str(path), "--var", "target=raw.orders"])
    assert result.exit_code == 0, result.output


def test_cli_validate_rejects_a_malformed_var(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    result = CliRunner().invoke(app, ["validate", str(path), "--var", "novalue"])
    assert result.exit_code == 2
    assert "--var 'novalue' is not NAME=VALUE" in result.stderr


# --------------------------------------------------------------------------- incremental

INCREMENTAL = variant(
    "      write_mode: append          # 18\n",
    "      write_mode: append          # 18\n    incremental:                  # 19\n"
    "      cursor: updated_at          # 20\n",
    VALID.replace("connection: files_in        # 13", "connection: warehouse       # 13").replace(
        "path: orders.parquet        # 14", "table: main.orders          # 14"
    ),
)


def test_incremental_step_is_valid(tmp_path: Path) -> None:
    assert check(tmp_path, INCREMENTAL)[1] == []


@pytest.mark.parametrize(
    ("old", "new", "path", "message", "hint"),
    [
        (
            "write_mode: append",
            "write_mode: replace",
            "steps[0].incremental",
            "an incremental step cannot use write_mode 'replace'",
            "use write_mode merge (or append)",
        ),
        (
            "cursor: updated_at          # 20",
            "cursor: updated_at\n      lookback: 15m",
            "steps[0].incremental.lookback",
            "lookback re-reads rows already loaded, which append would duplicate",
            "use write_mode merge with a primary_key",
        ),
        (
            "cursor: updated_at          # 20",
            "cursor: updated_at\n      null_cursor: load",
            "steps[0].incremental.null_cursor",
            "null_cursor 'load' reads NULL-cursor rows on every run",
            "null_cursor skip",
        ),
        (
            "cursor: updated_at          # 20",
            "cursor: updated_at\n      lookback: 5 parsecs",
            "steps[0].incremental.lookback",
            "'5 parsecs' is not a duration",
            None,
        ),
        (
            "cursor: updated_at          # 20",
            "cursor: updated_at\n      timezone: Mars/Olympus",
            "steps[0].incremental.timezone",
            "unknown time zone 'Mars/Olympus'",
            None,
        ),
        (
            "cursor: updated_at          # 20",
            "cursor: id\n      cursor_type: integer\n      lookback: 1h",
            "steps[0].incremental",
            "lookback of an integer cursor is a number of cursor units",
            None,
        ),
        (
            "connection: warehouse       # 16",
            "connection: files_in\n      path: out",
            "steps[0].incremental",
            "a files destination cannot keep incremental state with its rows",
            "load incrementally into duckdb, postgres or bigquery",
        ),
    ],
)
def test_incremental_mistakes(
    tmp_path: Path, old: str, new: str, path: str, message: str, hint: str | None
) -> None:
    text = variant(old, new, INCREMENTAL)
    if "files_in\n      path: out" in new:
        text = text.replace("      table: raw.orders           # 17\n", "")
    _, found = check(tmp_path, text)
    d = one(found, path)
    assert message in d.message
    if hint:
        assert d.hint is not None
        assert hint in d.hint


def test_source_and_sources_together_are_refused(tmp_path: Path) -> None:
    text = variant(
        "    destination:                  # 15\n",
        "    sources: [{connection: warehouse, table: main.a}]\n    destination:\n",
        INCREMENTAL,
    )
    _, found = check(tmp_path, text)
    assert any("either 'source' or 'sources'" in d.message for d in found)


def test_each_of_several_sources_is_checked(tmp_path: Path) -> None:
    text = variant(
        "    source:                       # 12\n"
        "      connection: warehouse       # 13\n"
        "      table: main.orders          # 14\n",
        "    sources:\n      - {connection: warehouse, table: main.a}\n"
        "      - {connection: warehouse, path: b.csv}\n",
        INCREMENTAL,
    )
    _, found = check(tmp_path, text)
    d = one(found, "steps[0].sources[1].path")
    assert d.message == "'path' does not apply to a duckdb source"


BIGQUERY = variant(
    "    path: warehouse.duckdb        #  8\n",
    "    path: warehouse.duckdb        #  8\n  bq: {type: bigquery, project: p, dataset: d}\n",
)


def test_a_bigquery_destination_with_partitioning_and_clustering_is_valid(tmp_path: Path) -> None:
    text = variant(
        "      connection: warehouse       # 16\n",
        "      connection: bq\n      partition_by: {field: created_at, granularity: MONTH}\n"
        "      cluster_by: [customer_id]\n",
        BIGQUERY,
    )
    assert check(tmp_path, text)[1] == []


def test_a_bigquery_source_takes_table_or_query(tmp_path: Path) -> None:
    text = variant(
        "      connection: files_in        # 13\n      path: orders.parquet        # 14\n",
        "      connection: bq\n      table: orders\n      where: id > 5\n",
        BIGQUERY,
    )
    assert check(tmp_path, text)[1] == []
    found = check(tmp_path, text.replace("      table: orders\n", "      path: orders\n"))[1]
    path = one(found, "steps[0].source.path")
    assert path.message == "'path' does not apply to a bigquery source"
    assert path.hint == "bigquery sources take: columns, limit, query, stream, table, where"
    assert one(found, "steps[0].source").message == "a bigquery source needs 'query' or 'table'"


def test_partition_granularity_lists_the_choices(tmp_path: Path) -> None:
    text = variant(
        "      connection: warehouse       # 16\n",
        "      connection: bq\n      partition_by: {granularity: WEEK}\n",
        BIGQUERY,
    )
    [d] = check(tmp_path, text)[1]
    assert d.path == "steps[0].destination.partition_by.granularity"
    assert d.hint == "use one of: DAY, HOUR, MONTH, YEAR"


def test_mongodb_sources_are_checked_and_cannot_be_destinations(tmp_path: Path) -> None:
    _, found = check(
        tmp_path,
        textwrap.dedent("""\
        pipeline_id: m
        connections:
          mongo: {type: mongodb, uri: "mongodb://127.0.0.1", database: shop}
          wh: {type: duckdb}
        steps:
          - step_id: a
            type: sync
            source: {connection: mongo, filter: {status: paid}, schema: {price: "decimal(12,2)"}}
            destination: {connection: wh, table: orders}
          - step_id: b
            type: sync
            source: {connection: mongo, collection: orders, table: x}
            destination: {connection: mongo, table: orders}
        """),
    )
    messages = {(d.line, d.message) for d in found}
    assert messages == {
        (8, "a mongodb source needs 'collection'"),  # 'schema' is an option it takes
        (12, "'table' does not apply to a mongodb source"),
        (13, "connection 'mongo' is mongodb, which cannot be a destination"),
    }
