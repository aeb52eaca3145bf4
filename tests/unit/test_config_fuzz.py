"""A property-based fuzzer of pipeline files: the example pipelines (``examples/`` and the
pipelines written in the tests), mutated the way careless and hostile users do, are either
valid or refused with diagnostics that each name the file and a line. Nothing else: no
other exception, no traceback, no unbounded time or memory.

Mutations: keys deleted, duplicated, renamed; values retyped, made huge, given NUL
characters, variable references, secret references or deep nesting; variables that
reference each other; YAML aliases (and alias bombs); invalid UTF-8, raw control bytes,
truncation. The seed is fixed (``derandomize``) and the budget too (``max_examples``), so
CI runs the same examples in well under a minute.

Time and memory are bounded per example: hypothesis' ``deadline`` is a guard against
unbounded work (an alias bomb of 363 bytes took 13 s before the limits, and each level
multiplies that by 9), set far above what any example needs; tracemalloc measures the
peak memory of each validation.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import textwrap
import tracemalloc
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from deltaflow.cli import app
from deltaflow.config.loader import load_pipeline, validate_file
from deltaflow.errors import ConfigValidationError, Diagnostic

ROOT = Path(__file__).resolve().parents[2]
MAX_PEAK_BYTES = 200 * 2**20
"""The most memory one validation may take (the largest file allowed is 1M characters)."""
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=dt.timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _pipelines_in_tests() -> list[str]:
    """Module-level string constants of the test suite that hold a pipeline."""
    found = []
    for file in sorted((ROOT / "tests").rglob("test_*.py")):
        if file.name == Path(__file__).name:
            continue
        for node in ast.parse(file.read_text(encoding="utf-8")).body:
            value = node.value if isinstance(node, ast.Assign) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                text = textwrap.dedent(value.value)
                if "pipeline_id:" in text and "steps:" in text:
                    found.append(text)
    return found


SEEDS = [
    *(p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples").rglob("*.yml"))),
    *_pipelines_in_tests(),
]


def test_the_fuzzer_has_seeds_from_the_examples_and_the_tests() -> None:
    assert len(SEEDS) >= 8
    assert any("pipeline_id: quickstart" in s for s in SEEDS)


# --------------------------------------------------------------------------- mutations

Path_ = tuple[Any, ...]
Draw = Callable[[st.SearchStrategy[Any]], Any]

NAMES = st.sampled_from(
    ["date", "run_id", "tenant_id", "pipeline_id", "start_timestamp", "v0", "v1", "v2", "x"]
)
SECRETS = st.sampled_from(
    [
        "${env:DELTAFLOW_FUZZ_SECRET}",
        "${env:DELTAFLOW_FUZZ_UNSET}",
        "${env:DELTAFLOW_FUZZ_SHORT}",
        "${file:/dev/zero}",
        "${file:/dev/null}",
        "${file:.}",
        "${file:missing/key}",
        "${vault:key}",
        "${env:}",
        "${file:}",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.dates(),
)


def _paths(value: Any, path: Path_ = ()) -> list[Path_]:
    """Every key path inside ``value`` (the root excluded)."""
    out: list[Path_] = []
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            out.append((*path, key))
            out.extend(_paths(item, (*path, key)))
    return out


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: Path_, value: Any) -> None:
    _get(data, path[:-1])[path[-1]] = value


def _delete(draw: Draw, data: Any, path: Path_) -> None:
    del _get(data, path[:-1])[path[-1]]


def _retype(draw: Draw, data: Any, path: Path_) -> None:
    value = draw(
        st.one_of(
            SCALARS,
            st.lists(SCALARS, max_size=3),
            st.dictionaries(st.text(max_size=5), SCALARS, max_size=3),
        )
    )
    _set(data, path, value)


def _huge(draw: Draw, data: Any, path: Path_) -> None:
    _set(data, path, "x" * draw(st.sampled_from([10_000, 300_000, 1_100_000])))


def _into_string(text: str, draw: Draw) -> Callable[[str], str]:
    def insert(value: str) -> str:
        at = draw(st.integers(0, len(value)))
        return value[:at] + text + value[at:]

    return insert


def _edit_string(draw: Draw, data: Any, path: Path_, insert: str) -> None:
    value = _get(data, path)
    value = value if isinstance(value, str) else str(value)
    _set(data, path, _into_string(insert, draw)(value))


def _nul(draw: Draw, data: Any, path: Path_) -> None:
    _edit_string(draw, data, path, "\x00")


def _variable(draw: Draw, data: Any, path: Path_) -> None:
    _edit_string(draw, data, path, "{" + draw(NAMES) + "}")


def _secret(draw: Draw, data: Any, path: Path_) -> None:
    _edit_string(draw, data, path, draw(SECRETS))


def _deep(draw: Draw, data: Any, path: Path_) -> None:
    value: Any = _get(data, path)
    for _ in range(draw(st.integers(1, 120))):
        value = [value] if draw(st.booleans()) else {"k": value}
    _set(data, path, value)


def _rename(draw: Draw, data: Any, path: Path_) -> None:
    parent = _get(data, path[:-1])
    if isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = parent.pop(path[-1])


TREE_MUTATIONS = [_delete, _retype, _huge, _nul, _variable, _secret, _deep, _rename]


def _variables(draw: Draw, data: dict[str, Any]) -> None:
    """Variables referencing each other, doubling or in a cycle, used by some value."""
    count = draw(st.integers(1, 30))
    names = [f"v{i}" for i in range(count)]
    data["variables"] = {
        name: draw(
            st.sampled_from(
                [f"{{{names[i - 1]}}}{{{names[i - 1]}}}" if i else "abcdefgh", f"{{{names[-1]}}}"]
            )
        )
        for i, name in enumerate(names)
    }
    paths = _paths(data)
    if paths:
        _edit_string(draw, data, draw(st.sampled_from(paths)), "{" + names[-1] + "}")


def _mutate_tree(draw: Draw, text: str) -> str:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if not isinstance(data, dict):
        return text
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 9)) == 0:
            _variables(draw, data)
            continue
        paths = _paths(data)
        if not paths:
            break
        mutation = draw(st.sampled_from(TREE_MUTATIONS))
        mutation(draw, data, draw(st.sampled_from(paths)))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000)


ODD_YAML = [
    "x: !!python/name:os.system\n",
    "x: !!binary aGVsbG8=\n",
    "x: !!set {a, b}\n",
    "x: !custom value\n",
    "? [a, b]\n: c\n",
    "<<: {pipeline_id: merged}\n",
    "---\npipeline_id: second\n",
    "x: 2001-12-14t21:59:43.10-05:00\n",
    "1: one\n",
    "null: ~\n",
    '"\\e[2J\\e[31mkey": value\n',
    'pipeline_id: "p\\x1b]0;title\\x07"\n',
]


def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _mutate_text(draw: Draw, text: str) -> bytes:
    """Mutations of the text itself: lines, aliases, bytes."""
    lines = text.splitlines(keepends=True) or ["\n"]
    kind = draw(st.integers(0, 8))
    at = draw(st.integers(0, len(lines) - 1))
    if kind == 0:  # a duplicated line: often a duplicated key
        lines.insert(at, lines[at])
    elif kind == 1:  # an alias bomb
        lines.append(_bomb(draw(st.integers(2, 12))))
    elif kind == 2:  # an anchor and its use elsewhere, or an alias to nothing
        lines[at] = lines[at].replace(": ", ": &anchor ", 1)
        other = draw(st.integers(0, len(lines) - 1))
        lines[other] = lines[other].replace(": ", ": *anchor #", 1)
    elif kind == 3:  # a line cut short
        lines = lines[: at + 1]
        lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
    elif kind == 4:  # an indentation change
        lines[at] = draw(st.sampled_from(["", " ", "\t", "    "])) + lines[at].lstrip()
    elif kind == 5:  # a tag, a complex key, a merge key, a second document
        lines.insert(at, draw(st.sampled_from(ODD_YAML)))
    raw = "".join(lines).encode("utf-8")
    if kind >= 6:  # bytes: invalid UTF-8, control characters, NUL
        insert = draw(
            st.sampled_from(
                [b"\xff", b"\xc3", b"\x80\x80", b"\x00", b"\x07", b"\x1b[31m", b"\xef\xbb\xbf"]
            )
        )
        where = draw(st.integers(0, len(raw)))
        raw = raw[:where] + insert + raw[where:]
    return raw


@st.composite
def mutated_pipelines(draw: Draw) -> bytes:
    text = draw(st.sampled_from(SEEDS))
    if draw(st.booleans()):
        text = _mutate_tree(draw, text)
    if draw(st.booleans()):
        return _mutate_text(draw, text)
    return text.encode("utf-8")


# --------------------------------------------------------------------------- properties


def _assert_located(diagnostics: list[Diagnostic], file: Path) -> None:
    """Each diagnostic names the file and a line, and holds no control character that a
    terminal would obey (a file's text is shown escaped)."""
    assert diagnostics, "a refusal must say why"
    for d in diagnostics:
        assert d.file == str(file), d
        assert isinstance(d.line, int), d
        assert d.line >= 1, d
        assert d.message, d
        shown = f"{d.message} {d.hint or ''} {d.path}"
        assert not [c for c in shown if unicodedata.category(c) == "Cc" and c != "\n"], d


def _peak(call: Callable[[], Any]) -> tuple[Any, int]:
    """What ``call`` returns, and the most memory it held at once."""
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = tmp_path_factory.mktemp("fuzz")
    (made / "data").mkdir()
    return made


@pytest.fixture(autouse=True, scope="module")
def secrets_in_the_environment() -> Any:
    saved = {k: os.environ.get(k) for k in ("DELTAFLOW_FUZZ_SECRET", "DELTAFLOW_FUZZ_SHORT")}
    os.environ["DELTAFLOW_FUZZ_SECRET"] = "fuzz-Secret-Value-4417"
    os.environ["DELTAFLOW_FUZZ_SHORT"] = "ab"
    os.environ.pop("DELTAFLOW_FUZZ_UNSET", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@settings(FUZZ, max_examples=400)
@given(mutated_pipelines())
def test_validate_passes_or_names_file_and_line(folder: Path, raw: bytes) -> None:
    file = folder / "pipeline.yml"
    file.write_bytes(raw)
    diagnostics, peak = _peak(lambda: validate_file(file, cli_vars={"x": "1"}))
    assert peak < MAX_PEAK_BYTES
    if diagnostics:
        _assert_located(diagnostics, file)


@settings(FUZZ, max_examples=250)
@given(mutated_pipelines())
def test_loading_with_secrets_passes_or_names_file_and_line(folder: Path, raw: bytes) -> None:
    file = folder / "pipeline.yml"
    file.write_bytes(raw)

    def load() -> list[Diagnostic]:
        try:
            load_pipeline(file)
        except ConfigValidationError as exc:
            return exc.diagnostics
        return []

    diagnostics, peak = _peak(load)
    assert peak < MAX_PEAK_BYTES
    if diagnostics:
        _assert_located(diagnostics, file)


@settings(FUZZ, max_examples=60)
@given(mutated_pipelines())
def test_the_validate_command_exits_0_or_1_without_a_traceback(folder: Path, raw: bytes) -> None:
    file = folder / "cli.yml"
    file.write_bytes(raw)
    result = CliRunner().invoke(app, ["validate", str(file)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 1:
        assert f"{file}:" in result.output
