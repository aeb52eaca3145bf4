"""`${env:NAME}` and `${file:path}` secrets: resolved at load time, never shown afterwards."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from deltaflow.config import load_pipeline, validate_file
from deltaflow.config.secrets import MASK, redact, redact_tree, remember, resolve
from deltaflow.errors import ConfigError, ConfigValidationError, Diagnostic, SecretError

PIPELINE = """\
pipeline_id: orders
connections:
  warehouse:
    type: duckdb
    path: {path}
    memory_limit: {memory}
steps:
  - step_id: copy
    type: sync
    source: {{connection: warehouse, table: src}}
    destination: {{connection: warehouse, table: dst}}
"""


def write(folder: Path, *, path: str = "wh.duckdb", memory: str = "1GB") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "pipeline.yml"
    file.write_text(textwrap.dedent(PIPELINE.format(path=path, memory=memory)), encoding="utf-8")
    return file


def unique(prefix: str) -> str:
    """A value no other test has made secret (the redaction registry is process-wide)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def one(diagnostics: list[Diagnostic], path: str) -> Diagnostic:
    found = [d for d in diagnostics if d.path == path]
    assert len(found) == 1, f"expected one diagnostic at {path!r}, got {diagnostics}"
    return found[0]


def load_problems(file: Path) -> tuple[ConfigValidationError, list[Diagnostic]]:
    with pytest.raises(ConfigValidationError) as info:
        load_pipeline(file)
    return info.value, info.value.diagnostics


# --------------------------------------------------------------------------- resolving


def test_env_reference_resolves_at_load_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = unique("/data/warehouse")
    monkeypatch.setenv("DELTAFLOW_TEST_DB_PATH", value)
    loaded = load_pipeline(write(tmp_path, path="${env:DELTAFLOW_TEST_DB_PATH}"))
    assert loaded.pipeline.connections["warehouse"].path == value


def test_reference_inside_a_longer_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAFLOW_TEST_SIZE", "512")
    loaded = load_pipeline(write(tmp_path, memory="${env:DELTAFLOW_TEST_SIZE}MB"))
    assert loaded.pipeline.connections["warehouse"].memory_limit == "512MB"


def test_file_reference_is_relative_to_the_pipeline_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "configs" / "sales"
    value = unique("file-secret")
    (folder / "secrets").mkdir(parents=True)
    (folder / "secrets" / "db_path").write_text(f"  {value}\n")  # surrounding space is dropped
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not relative to the working directory
    loaded = load_pipeline(write(folder, path="${file:secrets/db_path}"))
    assert loaded.pipeline.connections["warehouse"].path == value


def test_file_reference_may_be_absolute(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "db_path"
    secret.parent.mkdir()
    value = unique("absolute")
    secret.write_text(value)
    loaded = load_pipeline(write(tmp_path / "p", path=f"${{file:{secret}}}"))
    assert loaded.pipeline.connections["warehouse"].path == value


def test_loading_without_resolving_keeps_the_references(tmp_path: Path) -> None:
    loaded = load_pipeline(
        write(tmp_path, path="${env:DELTAFLOW_TEST_UNSET}"), resolve_secrets=False
    )
    assert loaded.pipeline.connections["warehouse"].path == "${env:DELTAFLOW_TEST_UNSET}"


# --------------------------------------------------------------------------- failing to resolve


def test_missing_env_var_is_a_diagnostic_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DELTAFLOW_TEST_UNSET", raising=False)
    file = write(tmp_path, path="${env:DELTAFLOW_TEST_UNSET}")
    error, found = load_problems(file)
    [d] = found  # and not also a complaint about the unresolved value
    assert (d.file, d.line, d.path) == (str(file), 5, "connections.warehouse.path")
    assert d.message == (
        "environment variable 'DELTAFLOW_TEST_UNSET' is not set "
        "(referenced as ${env:DELTAFLOW_TEST_UNSET})"
    )
    assert d.hint == "export DELTAFLOW_TEST_UNSET=... before running, or change the reference"
    assert isinstance(error, ConfigError)
    assert error.code == "CONFIG_INVALID"


def test_every_missing_secret_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DELTAFLOW_TEST_UNSET", raising=False)
    file = write(tmp_path, path="${env:DELTAFLOW_TEST_UNSET}", memory="${file:no/such/file}")
    _, found = load_problems(file)
    assert [(d.path, d.line) for d in found] == [
        ("connections.warehouse.path", 5),
        ("connections.warehouse.memory_limit", 6),
    ]
    memory = one(found, "connections.warehouse.memory_limit")
    assert memory.message == "cannot read secret file 'no/such/file': No such file or directory"
    assert memory.hint == "check the path; relative paths resolve against the pipeline file"


def test_resolve_raises_secret_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DELTAFLOW_TEST_UNSET", raising=False)
    with pytest.raises(SecretError) as info:
        resolve("x ${env:DELTAFLOW_TEST_UNSET}", tmp_path)
    assert info.value.code == "CONFIG_SECRET_UNRESOLVED"
    assert isinstance(info.value, ConfigError)
    assert "'DELTAFLOW_TEST_UNSET'" in info.value.message


# --------------------------------------------------------------------------- validate


def test_validate_does_not_resolve_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DELTAFLOW_TEST_UNSET", raising=False)
    file = write(tmp_path, path="${env:DELTAFLOW_TEST_UNSET}", memory="${file:missing.txt}")
    assert validate_file(file) == []


def test_validate_does_not_check_values_that_are_secret_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELTAFLOW_TEST_THREADS", "128")
    file = write(tmp_path)  # a number and a size, but only once the references are resolved
    text = file.read_text().replace("memory_limit: 1GB", "threads: ${env:DELTAFLOW_TEST_THREADS}")
    file.write_text(
        text.replace("type: duckdb", "type: duckdb\n    memory_limit: ${env:DELTAFLOW_TEST_MEMORY}")
    )
    assert validate_file(file) == []
    with pytest.raises(ConfigValidationError) as info:  # a pipeline cannot be built from them
        load_pipeline(file, resolve_secrets=False)
    assert {d.path for d in info.value.diagnostics} == {
        "connections.warehouse.threads",
        "connections.warehouse.memory_limit",
    }
    monkeypatch.setenv("DELTAFLOW_TEST_MEMORY", "4GB")  # three characters: maskable
    connection = load_pipeline(file).pipeline.connections["warehouse"]
    assert (connection.threads, connection.memory_limit) == (128, "4GB")


def test_validate_does_not_read_the_secret_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = unique("never-read")
    monkeypatch.setenv("DELTAFLOW_TEST_DB_PATH", value)
    assert validate_file(write(tmp_path, path="${env:DELTAFLOW_TEST_DB_PATH}")) == []
    assert redact(value) == value  # never resolved, so never registered as a secret


# --------------------------------------------------------------------------- redaction


def test_redact_masks_values_resolved_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = unique("resolved")
    monkeypatch.setenv("DELTAFLOW_TEST_DB_PATH", value)
    assert redact(f"path={value}") == f"path={value}"
    load_pipeline(write(tmp_path, path="${env:DELTAFLOW_TEST_DB_PATH}"))
    assert redact(f"path={value}; again {value}") == f"path={MASK}; again {MASK}"
    assert redact("nothing secret here") == "nothing secret here"


def test_redact_masks_the_longest_value_first() -> None:
    short = unique("tok")
    remember(short)
    remember(short + "-longer")
    assert redact(f"{short}-longer and {short}") == f"{MASK} and {MASK}"


def test_values_shorter_than_three_characters_are_refused() -> None:
    with pytest.raises(SecretError, match="too short to mask"):
        remember("ab")  # masking two characters would garble every message; showing them leaks
    assert redact("ab cd") == "ab cd"


# --------------------------------------------------------------------------- no leaks


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("memory_limit: 1GB", "memory_limit: ${env:DELTAFLOW_TEST_SECRET}"),  # bad pattern
        ("memory_limit: 1GB", "threads: ${env:DELTAFLOW_TEST_SECRET}"),  # not an integer
        ("table: dst", "table: dst, write_mode: '${env:DELTAFLOW_TEST_SECRET}'"),  # bad choice
    ],
)
def test_secret_values_never_appear_in_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str
) -> None:
    value = unique("not-valid-here")
    monkeypatch.setenv("DELTAFLOW_TEST_SECRET", value)
    file = write(tmp_path)
    file.write_text(file.read_text().replace(old, new))
    error, found = load_problems(file)
    assert len(found) == 1
    shown = [str(error), repr(error), str(found[0]), repr(found[0]), found[0].hint or ""]
    assert [text for text in shown if value in text] == []
    assert MASK in found[0].message


def test_secret_used_as_a_connection_name_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = unique("conn")
    monkeypatch.setenv("DELTAFLOW_TEST_SECRET", value)
    file = write(tmp_path)
    text = file.read_text()
    file.write_text(
        text.replace(
            "{connection: warehouse, table: dst",
            "{connection: '${env:DELTAFLOW_TEST_SECRET}', table: dst",
        )
    )
    error, found = load_problems(file)
    d = one(found, "steps[0].destination.connection")
    assert d.message == f"connection '{MASK}' is not defined."
    assert value not in str(error)
    assert value not in repr(error)


# --------------------------------------------------------------------------- every encoding


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s,
        lambda s: json.dumps(s)[1:-1],
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
        lambda s: quote(s, safe=""),
        lambda s: quote_plus(s),
        lambda s: repr(s)[1:-1],
        lambda s: ascii(s)[1:-1],
        lambda s: s.replace("'", "''"),
    ],
    ids=["raw", "json", "json_unicode", "url", "url_plus", "repr", "ascii", "sql"],
)
def test_a_secret_is_masked_in_every_encoding(encode: Any) -> None:
    value = unique("tök'3n\"/?&=+ \\")
    remember(value)
    text = f"before {encode(value)} after"
    assert redact(text) == f"before {MASK} after"


def test_a_structure_is_redacted_string_by_string_keys_too() -> None:
    value = unique("Geheimnis-ü")
    remember(value)
    tree = {value: [f"x {value}", 3, {"k": (value, None)}]}
    assert redact_tree(tree) == {MASK: [f"x {MASK}", 3, {"k": [MASK, None]}]}


def test_a_directory_is_not_read_as_a_secret(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as info:
        resolve("${file:.}", tmp_path)
    assert info.value.message == (
        "cannot read secret file '.': not a regular file (a device, a pipe or a directory)"
    )


def test_an_empty_secret_is_allowed_it_shows_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELTAFLOW_TEST_EMPTY", "")
    assert resolve("a${env:DELTAFLOW_TEST_EMPTY}b", tmp_path) == "ab"
    assert redact("ab") == "ab"
