"""The run store: secrets masked before anything is encoded, and records that always read."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

from deltaflow.config.secrets import MASK, remember
from deltaflow.metadata.store import RunRecord, RunStore, StepRecord


def test_a_non_ascii_secret_in_step_details_is_masked_in_the_stored_bytes(tmp_path: Path) -> None:
    secret = f"tök3n-{uuid.uuid4().hex}"
    remember(secret)
    store = RunStore(tmp_path / "runs.db")
    store.save_run(RunRecord("r1", "p", "default", "running", "2026-01-01T00:00:00"))
    step = StepRecord("r1", "dq", "quality", "failed", 0)
    step.details = {"checks": [{"name": f"check {secret}", "sample": [{"token": secret}]}]}
    store.save_step(step)

    stored = (tmp_path / "runs.db").read_bytes()
    assert secret.encode() not in stored
    assert json.dumps(secret)[1:-1].encode() not in stored  # the \u00f6 form
    assert step.details["checks"][0]["name"] == f"check {MASK}"  # what is shown is what is stored
    [read] = store.steps("r1")
    assert read.details == {"checks": [{"name": f"check {MASK}", "sample": [{"token": MASK}]}]}


def test_step_details_that_are_not_a_mapping_are_kept_and_still_read(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    step = StepRecord("r1", "load", "sync", "failed", 0)
    step.details = [("sqlstate", "42501")]  # type: ignore[assignment]  # a driver's 'details'
    store.save_step(step)
    assert store.steps("r1")[0].details == {"details": [["sqlstate", "42501"]]}


def test_a_stored_list_of_details_from_an_older_version_still_reads(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    store.save_step(StepRecord("r1", "load", "sync", "failed", 0))
    with sqlite3.connect(tmp_path / "runs.db") as con:
        con.execute('UPDATE step_runs SET details = \'[["severity", "ERROR"]]\'')
    assert store.steps("r1")[0].details == {"details": [["severity", "ERROR"]]}
