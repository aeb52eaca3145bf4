"""How runs and steps are recorded when steps succeed, fail, are interrupted or crash."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
from deltaflow.config.loader import LoadedPipeline
from deltaflow.config.secrets import remember
from deltaflow.orchestration import runner

PIPELINE = """\
pipeline_id: p
connections:
  files: {type: files}
  wh: {type: duckdb, path: wh.duckdb}
steps:
  - {step_id: one, type: sync, source: {connection: files, path: a.csv},
     destination: {connection: wh, table: a}}
  - {step_id: two, type: sync, source: {connection: files, path: a.csv},
     destination: {connection: wh, table: b}}
"""


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedPipeline:
    (tmp_path / "a.csv").write_text("id\n1\n2\n")
    (tmp_path / "p.yml").write_text(PIPELINE)
    return load_pipeline(tmp_path / "p.yml")


def statuses(store: RunStore, run_id: str) -> list[tuple[str, str]]:
    return [(s.step_id, s.status) for s in store.steps(run_id)]


def test_a_successful_run_records_every_step(tmp_path: Path, loaded: LoadedPipeline) -> None:
    store = RunStore(tmp_path / "runs.db")
    result = run_pipeline(loaded, context=RunContext(run_id="r1"), store=store)

    assert result.ok
    assert statuses(store, "r1") == [("one", "succeeded"), ("two", "succeeded")]
    run = store.run("r1")
    assert run is not None
    assert (run.status, run.rows_read, run.rows_loaded) == ("succeeded", 4, 4)


def test_ctrl_c_records_the_step_and_the_run_as_cancelled(
    tmp_path: Path, loaded: LoadedPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setitem(runner.STEP_RUNNERS, "sync", interrupted)
    store = RunStore(tmp_path / "runs.db")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(loaded, context=RunContext(run_id="r2"), store=store)

    assert statuses(store, "r2") == [("one", "cancelled"), ("two", "skipped")]
    run = store.run("r2")
    assert run is not None
    assert (run.status, run.error_code) == ("cancelled", "RUN_CANCELLED")


def test_a_ctrl_c_wrapped_by_a_driver_still_cancels(
    tmp_path: Path, loaded: LoadedPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def wrapped(*args: Any) -> Any:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Query interrupted") from exc

    monkeypatch.setitem(runner.STEP_RUNNERS, "sync", wrapped)
    store = RunStore(tmp_path / "runs.db")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(loaded, context=RunContext(run_id="r3"), store=store)
    run = store.run("r3")
    assert run is not None
    assert run.status == "cancelled"


def test_an_unexpected_error_fails_the_step_with_internal_error(
    tmp_path: Path, loaded: LoadedPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(runner.STEP_RUNNERS, "sync", broken)
    store = RunStore(tmp_path / "runs.db")
    result = run_pipeline(loaded, context=RunContext(run_id="r4"), store=store)

    assert not result.ok
    assert statuses(store, "r4") == [("one", "failed"), ("two", "skipped")]
    run = store.run("r4")
    assert run is not None
    assert (run.error_code, run.error_message) == (
        "INTERNAL_ERROR",
        "ZeroDivisionError: boom Fix: this is unexpected; rerun with --verbose and report it",
    )


def test_an_error_outside_the_steps_is_never_recorded_as_success(
    tmp_path: Path, loaded: LoadedPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path / "runs.db")
    calls = {"n": 0}
    original = store.save_step

    def flaky(record: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the second step's first save
            raise OSError("disk full")
        original(record)

    monkeypatch.setattr(store, "save_step", flaky)
    with pytest.raises(OSError, match="disk full"):
        run_pipeline(loaded, context=RunContext(run_id="r5"), store=store)
    run = store.run("r5")
    assert run is not None
    assert (run.status, run.error_code) == ("failed", "INTERNAL_ERROR")


def test_verbose_logs_mask_secrets_in_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deltaflow.cli._render import setup_logging as _setup_logging

    remember("tok-Very-Secret-991")
    _setup_logging(verbose=True)
    log = logging.getLogger("deltaflow.test")
    try:
        raise RuntimeError("bad token tok-Very-Secret-991")
    except RuntimeError:
        log.debug("failed", exc_info=True)
    logging.getLogger("deltaflow").handlers.clear()

    err = capsys.readouterr().err
    assert "RuntimeError: bad token ***" in err
    assert "tok-Very-Secret-991" not in err


def test_resources_close_every_handle_even_when_one_fails(tmp_path: Path) -> None:
    from deltaflow.connectors.protocol import RunResources

    closed: list[str] = []
    resources = RunResources(tmp_path, "r")

    def failing() -> None:
        raise OSError("cannot close")

    resources.closers.extend([lambda: closed.append("a"), failing, lambda: closed.append("c")])
    with pytest.raises(OSError, match="cannot close"):
        resources.close()
    assert closed == ["c", "a"]


def test_step_selection_names_unknown_steps(loaded: LoadedPipeline) -> None:
    from deltaflow.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no step 'tow' in this pipeline\. Did you mean 'two'"):
        runner.select_steps(loaded.pipeline.steps, ["tow"])
