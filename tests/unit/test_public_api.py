"""The public surface: what `import deltaflow` exports, costs, and how errors behave."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import deltaflow
from deltaflow import errors

HEAVY = (
    "pyarrow",
    "duckdb",
    "numpy",
    "pandas",
    "psycopg",
    "pymongo",
    "google",
    "apache_beam",
    "pydantic",
    "yaml",
    "typer",
    "rich",
)


def test_exported_names_are_pinned() -> None:
    assert sorted(deltaflow.__all__) == [
        "DeltaFlowError",
        "LoadedPipeline",
        "Pipeline",
        "RunContext",
        "RunResult",
        "RunStore",
        "__version__",
        "load_pipeline",
        "run_pipeline",
    ]
    for name in deltaflow.__all__:
        assert getattr(deltaflow, name) is not None


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = deltaflow.nope  # type: ignore[attr-defined]


def test_import_deltaflow_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, deltaflow; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def error_classes() -> list[type[errors.DeltaFlowError]]:
    found = [getattr(errors, name) for name in errors.__all__]
    return [c for c in found if isinstance(c, type) and issubclass(c, errors.DeltaFlowError)]


def test_every_error_has_a_unique_code_a_category_and_a_retry_class() -> None:
    classes = [c for c in error_classes() if c is not errors.ConfigValidationError]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), codes
    for cls in classes:
        assert cls.code.isupper()
        assert cls.category in (
            "config",
            "connector",
            "schema",
            "data",
            "load",
            "run",
            "service",
            "internal",
        )
        assert isinstance(cls.retryable, bool)
        assert cls.code in errors.Code
    assert errors.ConnectionFailedError.retryable
    assert errors.ConnectionLostError.retryable
    assert not errors.SourceError.retryable


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_errors_survive_pickling_with_code_and_hint(cls: type[errors.DeltaFlowError]) -> None:
    specific = errors.Code.LOAD_NO_PRIMARY_KEY  # a more specific code than the class's
    if cls is errors.ConfigValidationError:
        error: errors.DeltaFlowError = cls([errors.Diagnostic("bad", path="a.b", line=3)])
    elif cls is errors.JsonValidationError:
        error = cls("metrics.json", ["m1: sql: is empty"])
    elif cls is errors.QualityFailedError:
        error = cls("2 checks failed", {"checks": []}, hint="use 'y'", code=specific)
    else:
        error = cls("the value 'x' is wrong", hint="use 'y'", code=specific)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.code == error.code
    assert copy.hint == error.hint


def test_message_carries_the_fix() -> None:
    error = errors.SourceError("no files match 'x'", hint="check the path")
    assert str(error) == "no files match 'x' Fix: check the path"
    assert errors.did_you_mean("duckbd", ["duckdb", "files"]) == " Did you mean 'duckdb'?"
    assert errors.did_you_mean("zzz", ["duckdb"]) == ""


def test_an_error_code_outside_the_enumeration_is_refused() -> None:
    with pytest.raises(ValueError, match="SPECIFIC_CODE"):
        errors.LoadError("x", code="SPECIFIC_CODE")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "blocked", "extra"),
    [("postgres", "adbc_driver_postgresql", "postgres"), ("mongodb", "pymongo", "mongodb")],
)
def test_a_connector_without_its_extra_names_the_pip_command(
    kind: str, blocked: str, extra: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from deltaflow.config.connections import CONNECTION_MODELS
    from deltaflow.config.models import DestinationSpec
    from deltaflow.connectors.protocol import RunResources
    from deltaflow.connectors.registry import open_destination

    monkeypatch.setitem(sys.modules, blocked, None)  # as if it were not installed
    options = {
        "postgres": {"dsn": "postgresql://h/db"},
        "mongodb": {"uri": "mongodb://h", "database": "d"},
    }
    conn = CONNECTION_MODELS[kind].model_validate({"type": kind, **options[kind]})
    spec = DestinationSpec(connection="c", table="t")
    with pytest.raises(errors.MissingDependencyError, match=blocked) as caught:
        open_destination(conn, spec, RunResources(tmp_path, "r"))
    assert caught.value.hint == f"pip install 'deltaflow[{extra}]'"


def test_metric_definitions_on_gcs_without_the_extra_name_the_pip_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaflow.metrics.definitions import read_text

    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(errors.MissingDependencyError, match="gcsfs") as caught:
        read_text("gs://bucket/metrics.json")
    assert caught.value.hint == "pip install 'deltaflow[gcs]'"
