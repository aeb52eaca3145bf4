"""Careless and hostile pipeline files: each is refused quickly with a diagnostic at a
file and line that names the limit or the fix, never an internal error or a traceback.

The limits (YAML aliases, nesting and size; variable expansion; secret files) are far
above any real pipeline; each test goes past one of them.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from deltaflow.config import load_pipeline, validate_file
from deltaflow.config._yaml import MAX_ALIASES, MAX_CHARS, MAX_DEPTH
from deltaflow.config.connections import FILE_EXTENSIONS, PostgresConnection
from deltaflow.config.secrets import MAX_FILE_BYTES, resolve
from deltaflow.config.variables import MAX_TOTAL_CHARS, MAX_VALUE_CHARS
from deltaflow.errors import ConfigValidationError, ConnectionFailedError, Diagnostic, SecretError

VALID = """\
pipeline_id: orders
connections:
  files_in: {type: files, base_path: data}
  warehouse: {type: duckdb, path: warehouse.duckdb}
steps:
  - step_id: load
    type: sync
    source: {connection: files_in, path: orders.parquet}
    destination: {connection: warehouse, table: raw.orders}
"""


def check(tmp_path: Path, text: str | bytes) -> tuple[Path, list[Diagnostic]]:
    file = tmp_path / "pipeline.yml"
    if isinstance(text, bytes):
        file.write_bytes(text)
    else:
        file.write_text(textwrap.dedent(text), encoding="utf-8")
    return file, validate_file(file)


def only(diagnostics: list[Diagnostic]) -> Diagnostic:
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0]


# --------------------------------------------------------------------------- YAML limits


def test_an_alias_bomb_is_refused_at_its_line(tmp_path: Path) -> None:
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 9):  # 9**9 values once expanded, in a file of about 400 bytes
        levels.append(f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]")
    file, found = check(tmp_path, "pipeline_id: bomb\n" + "\n".join(levels) + "\nsteps: []\n")
    d = only(found)
    assert len(file.read_bytes()) < 500
    assert d.file == str(file)
    assert d.line in range(2, 11)
    assert d.message.startswith("the file is too large to read: the file's aliases expand to ")
    assert "over the limit of 100,000" in d.message


def test_aliases_of_a_long_string_are_refused(tmp_path: Path) -> None:
    big = "x" * 200_000
    users = "\n".join("  - *big" for _ in range(60))  # 12 million characters once expanded
    _, found = check(tmp_path, f"pipeline_id: p\nbig: &big {big}\nmany:\n{users}\nsteps: []\n")
    d = only(found)
    assert d.line == 2
    assert "characters, over the limit of 10,000,000" in d.message


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    users = "\n".join("  - *one" for _ in range(MAX_ALIASES + 1))
    _, found = check(tmp_path, f"pipeline_id: p\none: &one 1\nmany:\n{users}\nsteps: []\n")
    d = only(found)
    assert d.line == 3 + MAX_ALIASES + 1
    assert d.message == "the file is too large to read: more than 1,000 aliases (*name)"


def test_nesting_deeper_than_the_limit_is_refused(tmp_path: Path) -> None:
    deep = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5))
    _, found = check(tmp_path, "pipeline_id: p\n" + deep)
    d = only(found)
    assert d.line == MAX_DEPTH + 2  # level n is the mapping under k(n-2), from line n + 1
    assert d.message == (
        f"the file is too large to read: values nested more than {MAX_DEPTH} levels deep"
    )


def test_a_file_over_the_size_limit_is_refused_at_the_line_it_crosses(tmp_path: Path) -> None:
    line = "# " + "x" * 98 + "\n"
    file, found = check(tmp_path, VALID + line * (MAX_CHARS // len(line) + 1))
    d = only(found)
    assert d.message == "the file is longer than the limit of 1,000,000 characters"
    assert d.line == len(file.read_text()[:MAX_CHARS].splitlines())


def test_a_huge_file_is_not_read_whole(tmp_path: Path) -> None:
    file, found = check(tmp_path, b"a" * (MAX_CHARS * 4 + 10))
    d = only(found)
    assert (d.file, d.line) == (str(file), 1)
    assert d.message == "cannot read file: longer than the limit of 1,000,000 characters"


# --------------------------------------------------------------------------- bytes


def test_a_nul_byte_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    text = VALID.replace("table: raw.orders", "table: raw.ord\x00ers")
    _, found = check(tmp_path, text)
    d = only(found)
    assert d.line == 9
    column = text.splitlines()[8].index("\x00") + 1
    assert d.message == f"invalid YAML: character U+0000 is not allowed (column {column})"


def test_a_control_character_is_reported_at_its_line(tmp_path: Path) -> None:
    _, found = check(tmp_path, VALID.replace("pipeline_id: orders", "pipeline_id: or\x1bders"))
    assert only(found).line == 1


def test_an_escaped_nul_in_a_value_is_reported_at_its_key(tmp_path: Path) -> None:
    _, found = check(tmp_path, VALID.replace("table: raw.orders", 'table: "raw.or\\0ders"'))
    d = only(found)
    assert (d.line, d.path) == (9, "steps[0].destination.table")
    assert d.message == "the value holds a NUL character (written \\0 or \\x00)"


def test_invalid_utf8_is_reported_at_its_line(tmp_path: Path) -> None:
    file, found = check(tmp_path, VALID.encode().replace(b"raw.orders", b"raw.\xffrders"))
    d = only(found)
    assert (d.file, d.line) == (str(file), 9)
    column = VALID.splitlines()[8].index("orders") + 1
    assert d.message == f"cannot read file: not UTF-8 text (byte 0xff at column {column})"


# --------------------------------------------------------------------------- variables


def test_variables_that_double_each_other_are_refused(tmp_path: Path) -> None:
    doubling = "".join(f"  v{n}: '{{v{n - 1}}}{{v{n - 1}}}'\n" for n in range(1, 26))
    text = VALID.replace(
        "connections:", f"variables:\n  v0: abcdefghijklmnop\n{doubling}connections:"
    ).replace("table: raw.orders", "table: 'raw.o{v25}'")
    _, found = check(tmp_path, text)
    d = only(found)
    assert d.path == "variables.v16"  # 16 * 2**16 > MAX_VALUE_CHARS
    assert d.line == 3 + 16
    assert d.message == (
        f"'{{v15}}' makes this value longer than the limit of {MAX_VALUE_CHARS:,} characters"
    )


def test_a_variable_repeated_past_the_total_limit_is_refused(tmp_path: Path) -> None:
    size = MAX_CHARS // 4  # the file stays under its own limit
    many = "".join(f"  k{i}: '{{big}}'\n" for i in range(MAX_TOTAL_CHARS // size + 2))
    text = f"pipeline_id: p\nvariables:\n  big: '{'x' * size}'\n{many}"
    _, found = check(tmp_path, text + "steps: []\n")
    limited = [d for d in found if "more than 10,000,000 characters" in d.message]
    assert limited
    assert all(d.line and d.line > 3 for d in limited)


# --------------------------------------------------------------------------- secret files


def test_a_device_is_not_read_as_a_secret(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as info:
        resolve("${file:/dev/zero}", tmp_path)
    assert info.value.message == (
        "cannot read secret file '/dev/zero': not a regular file (a device, a pipe or a directory)"
    )


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(SecretError, match="not a regular file"):
        resolve("${file:pipe}", tmp_path)


def test_a_secret_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"k" * (MAX_FILE_BYTES + 1))
    with pytest.raises(SecretError) as info:
        resolve("${file:big}", tmp_path)
    assert info.value.message == (
        "cannot read secret file 'big': larger than the limit of 65,536 bytes"
    )


def test_a_secret_file_that_is_not_utf8_is_named_but_not_shown(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"hidden-\xff-content")
    file = tmp_path / "p.yml"
    file.write_text(VALID.replace("path: warehouse.duckdb", "path: '${file:key}'"))
    with pytest.raises(ConfigValidationError) as info:
        load_pipeline(file)
    d = only(info.value.diagnostics)
    assert (d.line, d.path) == (4, "connections.warehouse.path")
    assert d.message == "cannot read secret file 'key': not UTF-8 text (a byte at offset 7 is not)"
    assert "hidden" not in str(info.value)


def test_a_nul_byte_in_a_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"pass\x00word")
    with pytest.raises(SecretError) as info:
        resolve("${file:key}", tmp_path)
    assert info.value.message == "the value of ${file:key} holds a NUL character"


@pytest.mark.parametrize("value", ["Q", "Qz", " Qz\n"])
def test_a_secret_too_short_to_mask_is_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "key").write_text(value)
    with pytest.raises(SecretError) as info:
        resolve("x=${file:key}", tmp_path)
    assert "too short to mask" in info.value.message
    assert value.strip() not in info.value.message.replace("${file:key}", "")


# --------------------------------------------------------------------------- connections


def test_a_key_value_dsn_gets_its_settings_as_words() -> None:
    conn = PostgresConnection(
        type="postgres", dsn="host=db.internal port=6543 dbname=shop password='p w\\'d'"
    )
    assert conn.uri() == (
        "host=db.internal port=6543 dbname=shop password='p w\\'d' "
        "sslmode=prefer application_name=deltaflow connect_timeout=10"
    )
    assert conn.address() == "db.internal:6543"
    assert conn.secret_password() == "p w'd"


def test_a_key_value_dsn_keeps_the_settings_it_gives() -> None:
    conn = PostgresConnection(type="postgres", dsn="host=db sslmode=require", sslmode="disable")
    assert conn.uri() == "host=db sslmode=require application_name=deltaflow connect_timeout=10"


def test_a_uri_dsn_names_its_host_and_decodes_its_password() -> None:
    conn = PostgresConnection(type="postgres", dsn="postgresql://me:p%40ss@db.internal/shop")
    assert conn.address() == "db.internal:5432"
    assert conn.secret_password() == "p@ss"
    assert conn.uri().startswith("postgresql://me:p%40ss@db.internal/shop?sslmode=prefer&")


def test_a_failed_connection_names_the_host_of_a_key_value_dsn() -> None:
    from deltaflow.connectors.postgres.client import connect

    conn = PostgresConnection(
        type="postgres", dsn="host=127.0.0.1 port=9 dbname=nowhere connect_timeout=2"
    )
    with pytest.raises(ConnectionFailedError) as info:
        connect(conn).close()
    assert info.value.message.startswith("cannot connect to PostgreSQL at 127.0.0.1:9: ")
    assert "sslmode=prefer" not in info.value.message.split(": ", 1)[0]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "type: bigquery",
            "type: bigquery, api_endpoint: 'localhost:9050'",
            "api_endpoint must be an http:// or https:// URL, e.g. 'http://localhost:9050'",
        ),
        (
            "type: bigquery",
            "type: bigquery, storage_endpoint: 'http://localhost:9060'",
            "storage_endpoint must be 'host:port', without a scheme or a path",
        ),
    ],
)
def test_bigquery_endpoints_are_checked_at_validate(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = VALID.replace(
        "warehouse: {type: duckdb, path: warehouse.duckdb}",
        "warehouse: {type: bigquery, project: p, dataset: raw}",
    ).replace(old, new)
    _, found = check(tmp_path, text)
    d = only(found)
    assert d.line == 4
    assert message in d.message


# --------------------------------------------------------------------------- places


@pytest.mark.parametrize(
    ("old", "new", "path", "line"),
    [
        ("path: orders.parquet", "path: orders.xlsx", "steps[0].source.path", 8),
        ("path: orders.parquet", "path: 'orders/*'", "steps[0].source.path", 8),
        (
            "destination: {connection: warehouse, table: raw.orders}",
            "destination: {connection: files_in, path: out.txt}",
            "steps[0].destination.path",
            9,
        ),
    ],
)
def test_a_file_path_without_a_known_extension_needs_a_format(
    tmp_path: Path, old: str, new: str, path: str, line: int
) -> None:
    _, found = check(tmp_path, VALID.replace(old, new))
    d = only(found)
    assert (d.path, d.line) == (path, line)
    assert d.message.startswith("cannot tell the format of ")
    assert str(d.hint).startswith("add 'format:' with one of: parquet, csv, jsonl")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("path: orders.parquet", "path: orders.xlsx, format: csv"),
        ("path: orders.parquet", "path: 'orders/*.PARQUET'"),
        (
            "destination: {connection: warehouse, table: raw.orders}",
            "destination: {connection: files_in, path: out}",  # a directory of Parquet files
        ),
    ],
)
def test_a_file_path_with_a_format_or_a_known_extension_is_valid(
    tmp_path: Path, old: str, new: str
) -> None:
    assert check(tmp_path, VALID.replace(old, new))[1] == []


def test_the_extensions_validate_knows_are_those_the_files_connector_reads() -> None:
    from deltaflow.connectors.files.formats import EXTENSIONS

    assert FILE_EXTENSIONS == EXTENSIONS


def test_a_duckdb_schema_named_like_the_database_file_is_refused(tmp_path: Path) -> None:
    _, found = check(tmp_path, VALID.replace("path: warehouse.duckdb", "path: data/Raw.duckdb"))
    d = only(found)
    assert (d.path, d.line) == ("steps[0].destination.table", 9)
    assert d.message == (
        "table 'raw.orders' is in schema 'raw', the name DuckDB gives the database file "
        "'data/Raw.duckdb': DuckDB cannot tell the two apart"
    )
    assert d.hint == "rename the schema or the file, or write the table as 'Raw.raw.orders'"


# --------------------------------------------------------------------------- terminals


def test_control_characters_of_keys_and_values_are_shown_escaped(tmp_path: Path) -> None:
    text = VALID.replace("pipeline_id: orders", 'pipeline_id: orders\n"\\e[2Jkey": 1').replace(
        "table: raw.orders", 'table: raw.orders, write_mode: "up\\tsert\\e]0;x\\a"'
    )
    _, found = check(tmp_path, text)
    shown = "\n".join(str(d) for d in found)
    assert "unknown key '\\x1b[2Jkey'" in shown
    assert "invalid value 'up\\tsert\\x1b]0;x\\x07'" in shown
    assert not [c for c in shown if c < " " and c != "\n"]


def test_a_quality_step_on_a_schema_named_like_the_duckdb_file_is_refused(tmp_path: Path) -> None:
    text = VALID.replace("path: warehouse.duckdb", "path: raw.duckdb").replace(
        "table: raw.orders}", "table: main.orders}"
    )
    text += "  - {step_id: dq, type: quality, connection: warehouse, table: raw.orders,\n"
    text += "     checks: [{check: row_count, min: 1}]}\n"
    _, found = check(tmp_path, text)
    d = only(found)
    assert (d.path, d.line) == ("steps[1].table", 10)


def test_the_main_schema_of_main_duckdb_is_not_ambiguous(tmp_path: Path) -> None:
    text = VALID.replace("path: warehouse.duckdb", "path: main.duckdb")
    assert check(tmp_path, text.replace("table: raw.orders", "table: main.orders"))[1] == []
