"""The PostgreSQL set-up of the pipeline service: the app keeps its state and the run
queue (procrastinate) in the suite's PostgreSQL, and separate ``deltaflow worker``
processes run the runs. Workers share the load, a worker killed with SIGKILL mid-run
loses its run to ``WORKER_LOST`` and another one retries it without losing or repeating
a row, and SIGTERM lets a run finish or hands it back."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from deltaflow.metadata.service_records import Quotas
from deltaflow.server import ServerSettings, create_app
from tests.support.service import ADMIN_KEY, client

ROOT = {"X-API-Key": ADMIN_KEY}
SHORT_LEASE_S = 5.0  # short enough for a test, long enough for a loaded 2-core machine

#: a run that takes a moment: a thousand rows into a DuckDB file of its own
TINY = """\
pipeline_id: tiny
connections:
  wh: {type: duckdb, path: "runs/{run_id}.duckdb"}
steps:
  - step_id: numbers
    type: sync
    source: {connection: wh, query: "SELECT range AS id FROM range(1000)"}
    destination: {connection: wh, table: raw.numbers, write_mode: replace}
"""

#: a run long enough to be stopped in the middle: many small batches
LONG = """\
pipeline_id: long
connections:
  wh: {type: duckdb, path: "runs/{run_id}.duckdb"}
steps:
  - step_id: numbers
    type: sync
    batch_size: 1000
    source: {connection: wh, query: "SELECT range AS id FROM range(1500000)"}
    destination: {connection: wh, table: raw.numbers, write_mode: replace}
"""

#: incremental PostgreSQL -> PostgreSQL, exactly once across crashes and reruns
COPY = """\
pipeline_id: copy
connections:
  pg: {{type: postgres, dsn: "{dsn}"}}
steps:
  - step_id: events
    type: sync
    batch_size: 10000
    source: {{connection: pg, table: events}}
    destination: {{connection: pg, table: public.events_copy, write_mode: append}}
    incremental: {{cursor: updated_at}}
"""


def sql(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as con:
        cursor = con.execute(statement)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def wait_for(what: str, found: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll until ``found()`` is truthy; its value (the test fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        time.sleep(0.05)
    return value


class Workers:
    """``deltaflow worker`` processes on the test's database; all stopped at the end."""

    def __init__(self, dsn: str, root: Path, lease: float):
        self.dsn, self.root, self.lease = dsn, root, lease
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *options: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.root / f"worker{len(self.started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "deltaflow", "worker", "--database", self.dsn),
                    *("--configs", str(self.root / "configs")),
                    *("--state-dir", str(self.root / "state"), "--lease", str(self.lease)),
                    *options,
                ],
                cwd=self.root,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return process

    def name(self, process: subprocess.Popen[bytes]) -> str:
        """The worker's name in the runs it holds (``host:pid``)."""
        return f"{socket.gethostname()}:{process.pid}"

    def registered(self, count: int) -> None:
        """Wait until ``count`` procrastinate workers are listening."""
        wait_for(
            f"{count} workers",
            lambda: sql(self.dsn, "SELECT count(*) FROM procrastinate_workers")[0][0] >= count,
        )

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob("worker*.log")))

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(30)


@pytest.fixture
def root(tmp_path: Path, pg_dsn: str) -> Path:
    configs = tmp_path / "configs" / "shop"
    configs.mkdir(parents=True)
    (configs / "tiny.yml").write_text(TINY)
    (configs / "long.yml").write_text(LONG)
    (configs / "copy.yml").write_text(COPY.format(dsn=pg_dsn))
    (tmp_path / "runs").mkdir()
    return tmp_path


@pytest.fixture
def lease() -> float:
    """The lease of the service and its workers (a test about lost runs shortens it)."""
    return 60.0


@pytest.fixture
def api(root: Path, pg_dsn: str, lease: float) -> Iterator[Any]:
    """The service app on the test's database, with the queue there too (the service
    sweeps for lost runs like every worker)."""
    settings = ServerSettings(
        database=pg_dsn,
        configs=root / "configs",
        state_dir=root / "state",
        admin_key=ADMIN_KEY,
        lease_s=lease,
        queue="postgres",
        quotas=Quotas(concurrent_runs=100),
    )
    with client(create_app(settings)) as http:
        yield http


@pytest.fixture
def workers(root: Path, pg_dsn: str, lease: float, api: Any) -> Iterator[Workers]:
    running = Workers(pg_dsn, root, lease)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def acme(api: Any, root: Path, pg_dsn: str) -> dict[str, str]:
    """A tenant whose metadata tables are in the test's PostgreSQL database."""
    (root / "warehouse.dsn").write_text(pg_dsn)
    warehouse = {"type": "postgres", "dsn": f"${{file:{root / 'warehouse.dsn'}}}"}
    body = {"tenant_id": "acme", "warehouse": warehouse}
    answer = api.post("/api/v1/tenants", json=body, headers=ROOT)
    assert answer.status_code == 201, answer.text
    return {"X-API-Key": answer.json()["api_key"]}


def trigger(api: Any, key: dict[str, str], pipeline: str) -> str:
    body = {"allow_concurrent": True}
    answer = api.post(f"/api/v1/pipelines/run/acme/shop/{pipeline}", json=body, headers=key)
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["pipeline_logging_id"]
    return run_id


def runs(dsn: str, where: str = "TRUE") -> list[dict[str, Any]]:
    """The service's run records, oldest first."""
    with psycopg.connect(dsn) as con:
        cursor = con.execute(f"SELECT * FROM runs WHERE {where} ORDER BY requested_at, run_id")  # type: ignore[arg-type]
        names = [c.name for c in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def status(dsn: str, run_id: str) -> str:
    return str(runs(dsn, f"run_id = '{run_id}'")[0]["status"])


def test_two_worker_processes_share_twenty_runs_each_recorded_once(
    api: Any, acme: dict[str, str], workers: Workers, pg_dsn: str
) -> None:
    first = workers.start("--concurrency", "2")
    second = workers.start("--concurrency", "2")
    workers.registered(2)
    assert api.get("/readyz").json() == {"status": "ready", "database": "ok", "workers": "ok"}

    triggered = [trigger(api, acme, "tiny") for _ in range(20)]

    wait_for(
        "20 runs to end",
        lambda: len(runs(pg_dsn, "status IN ('succeeded', 'failed', 'cancelled')")) == 20,
    )
    recorded = runs(pg_dsn)
    assert sorted(r["run_id"] for r in recorded) == sorted(triggered), workers.output()
    assert {r["status"] for r in recorded} == {"succeeded"}, [r["error_message"] for r in recorded]
    assert {r["attempt"] for r in recorded} == {1}
    assert {r["rows_loaded"] for r in recorded} == {1000}
    holders = {r["worker_id"].split("/")[0] for r in recorded}
    assert holders == {workers.name(first), workers.name(second)}
    in_meta = sql(
        pg_dsn,
        "SELECT pipeline_logging_id, count(*) FROM acme.x_meta_pipeline_runs GROUP BY 1",
    )
    assert sorted(in_meta) == sorted((run_id, 1) for run_id in triggered)
    # successful jobs are deleted: nothing is left waiting, running or failed
    assert sql(pg_dsn, "SELECT status, count(*) FROM procrastinate_jobs GROUP BY 1") == []


def test_a_run_is_queued_with_its_job_in_one_transaction_and_never_twice(
    api: Any, acme: dict[str, str], pg_dsn: str
) -> None:
    from procrastinate.exceptions import AlreadyEnqueued

    app = api.app.state.deltaflow
    run_id = trigger(api, acme, "tiny")
    jobs = sql(pg_dsn, "SELECT args->>'run_id', queueing_lock, status FROM procrastinate_jobs")
    assert jobs == [(run_id, run_id, "todo")]

    store = app.service.store
    with pytest.raises(AlreadyEnqueued), store.engine.begin() as con:
        store.on_queued(con, run_id)
    with store.engine.connect() as con:  # a transaction that queues a run rolls back:
        transaction = con.begin()
        store.on_queued(con, "rolled-back")
        transaction.rollback()  # its job goes with it
    refused = api.post("/api/v1/pipelines/run/acme/shop/tiny", json={}, headers=acme)
    assert refused.status_code == 409  # already queued: refused, and no job written
    assert sql(pg_dsn, "SELECT count(*) FROM runs") == [(1,)]
    assert sql(pg_dsn, "SELECT count(*) FROM procrastinate_jobs") == [(1,)]


@pytest.mark.parametrize("lease", [SHORT_LEASE_S])
def test_a_worker_killed_mid_run_loses_it_and_another_worker_retries_exactly_once(
    api: Any, acme: dict[str, str], workers: Workers, pg_dsn: str, lease: float
) -> None:
    sql(pg_dsn, "CREATE TABLE events (id int PRIMARY KEY, v text, updated_at timestamptz)")
    sql(
        pg_dsn,
        "INSERT INTO events SELECT i, md5(i::text), "
        "timestamptz '2024-03-01 12:00+00' + i * interval '1 second' "
        "FROM generate_series(1, 300000) AS i",
    )
    doomed = workers.start(env={"DELTAFLOW_CRASH_AT": "mid_load"})  # SIGKILLs itself mid-load
    workers.registered(1)
    run_id = trigger(api, acme, "copy")
    wait_for("the run to start", lambda: status(pg_dsn, run_id) != "queued")
    other = workers.start()

    assert doomed.wait(60) == -signal.SIGKILL, workers.output()
    lost = wait_for(
        "the run to be lost",
        lambda: runs(pg_dsn, f"run_id = '{run_id}' AND status = 'failed'"),
        timeout=4 * lease,
    )[0]
    assert (lost["error_code"], lost["error_category"]) == ("WORKER_LOST", "WORKER_LOST")
    assert lost["worker_id"].startswith(workers.name(doomed))
    silent = dt.datetime.fromisoformat(lost["ended_at"]) - dt.datetime.fromisoformat(
        lost["heartbeat_at"]
    )
    assert silent >= dt.timedelta(seconds=lease)  # never declared lost before its lease
    retry = wait_for(
        "the retry to end",
        lambda: runs(pg_dsn, f"retry_of = '{run_id}' AND status IN ('succeeded', 'failed')"),
    )
    assert len(runs(pg_dsn, f"retry_of = '{run_id}'")) == 1, "retried exactly once"
    assert (retry[0]["status"], retry[0]["attempt"], retry[0]["trigger_type"]) == (
        "succeeded",
        2,
        "retry",
    ), workers.output()
    assert retry[0]["worker_id"].startswith(workers.name(other))
    assert_copy_equals_source(pg_dsn, 300_000)

    sql(
        pg_dsn,
        "INSERT INTO events SELECT i, md5(i::text), "
        "timestamptz '2024-03-01 12:00+00' + i * interval '1 second' "
        "FROM generate_series(300001, 301000) AS i",
    )
    again = trigger(api, acme, "copy")
    wait_for("the next run", lambda: status(pg_dsn, again) in ("succeeded", "failed"))
    assert runs(pg_dsn, f"run_id = '{again}'")[0]["rows_loaded"] == 1000
    assert_copy_equals_source(pg_dsn, 301_000)


def assert_copy_equals_source(dsn: str, rows: int) -> None:
    """The destination holds every source row once: no row lost, none repeated."""
    assert sql(dsn, "SELECT count(*), count(DISTINCT id) FROM events_copy") == [(rows, rows)]
    difference = (
        "(SELECT id, v, updated_at FROM events EXCEPT ALL "
        "SELECT id, v, updated_at FROM events_copy) UNION ALL "
        "(SELECT id, v, updated_at FROM events_copy EXCEPT ALL "
        "SELECT id, v, updated_at FROM events)"
    )
    assert sql(dsn, f"SELECT count(*) FROM ({difference}) AS d") == [(0,)]


def test_sigterm_lets_a_run_finish_within_the_grace_period(
    api: Any, acme: dict[str, str], workers: Workers, pg_dsn: str
) -> None:
    patient = workers.start("--grace", "120")
    workers.registered(1)
    run_id = trigger(api, acme, "long")
    wait_for("the run to start", lambda: status(pg_dsn, run_id) == "running")

    patient.send_signal(signal.SIGTERM)

    assert patient.wait(120) == 0, workers.output()
    finished = runs(pg_dsn, f"run_id = '{run_id}'")[0]
    assert (finished["status"], finished["rows_loaded"]) == ("succeeded", 1_500_000)
    assert finished["worker_id"].startswith(workers.name(patient))


def test_sigterm_past_the_grace_period_hands_the_run_back_to_another_worker(
    api: Any, acme: dict[str, str], workers: Workers, pg_dsn: str
) -> None:
    hasty = workers.start("--grace", "0")
    workers.registered(1)
    run_id = trigger(api, acme, "long")
    wait_for("the run to start", lambda: status(pg_dsn, run_id) == "running")

    hasty.send_signal(signal.SIGTERM)

    assert hasty.wait(60) == 0, workers.output()
    handed_back = runs(pg_dsn, f"run_id = '{run_id}'")[0]
    assert (handed_back["status"], handed_back["worker_id"]) == ("queued", None)
    assert sql(pg_dsn, "SELECT args->>'run_id', status FROM procrastinate_jobs") == [
        (run_id, "todo")
    ]
    successor = workers.start()
    wait_for("the run to end", lambda: status(pg_dsn, run_id) in ("succeeded", "failed"))
    done = runs(pg_dsn, f"run_id = '{run_id}'")[0]
    assert (done["status"], done["attempt"], done["rows_loaded"]) == ("succeeded", 1, 1_500_000)
    assert done["worker_id"].startswith(workers.name(successor))


def test_serve_on_postgresql_queues_in_the_database(root: Path, pg_dsn: str) -> None:
    from deltaflow.cli.serve import _settings

    on_postgres = _settings(pg_dsn, 2, root / "configs", root / "state", None, True, 60.0, "::1")
    embedded = _settings(None, 2, root / "configs", root / "state", None, True, 60.0, "::1")

    assert (on_postgres.queue, embedded.queue) == ("postgres", "embedded")


def test_a_worker_needs_the_postgresql_database(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deltaflow", "worker", "--database", "sqlite:///state/service.db"],
        cwd=root,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "not 'sqlite://...'" in done.stderr
    assert "--database postgresql://" in done.stderr
