"""The embedded service store (SQLite) under concurrent use: reads never wait for the
write lock, and an API key's last-used time is written at most once a minute."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from deltaflow.metadata.service_records import RunFilter, ServiceRun, TenantRecord, stamp
from deltaflow.metadata.service_store import ServiceStore
from deltaflow.metadata.service_tables import api_keys
from deltaflow.ops.keys import authenticate, create_key
from deltaflow.ops.service import Service


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ServiceStore]:
    made = ServiceStore(f"sqlite:///{tmp_path / 'service.db'}")
    made.add_tenant(TenantRecord("acme", "Acme", "acme", None))
    yield made
    made.close()


def test_reads_answer_while_another_connection_holds_the_write_lock(
    store: ServiceStore, tmp_path: Path
) -> None:
    run = ServiceRun("r1", "acme", "shop/numbers", "numbers", "queued", "api", {})
    store.insert_run(run, lambda _: None)
    writer = sqlite3.connect(tmp_path / "service.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE runs SET status = 'running' WHERE run_id = 'r1'")
        # deferred reads see the last commit; an immediate one would wait for the writer
        found = store.run("acme", "r1")
        assert found is not None
        assert found.status == "queued"
        assert store.tenant("acme") is not None
        assert [r.run_id for r in store.list_runs("acme", RunFilter())] == ["r1"]
        writer.execute("COMMIT")
    finally:
        writer.close()
    found = store.run("acme", "r1")
    assert found is not None
    assert found.status == "running"


def test_a_keys_last_used_time_is_written_once_a_minute(
    store: ServiceStore, tmp_path: Path
) -> None:
    svc = Service(store=store, configs=tmp_path, state_dir=tmp_path)
    made = create_key(svc, "acme", ["run"])
    assert store.keys("acme")[0].last_used_at is None

    authenticate(svc, made.key, None)
    first = store.keys("acme")[0].last_used_at
    assert first is not None
    authenticate(svc, made.key, None)
    assert store.keys("acme")[0].last_used_at == first  # within the minute: not written

    old = stamp(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    with store.engine.begin() as con:
        con.execute(update(api_keys).values(last_used_at=old))
    authenticate(svc, made.key, None)
    renewed = store.keys("acme")[0].last_used_at
    assert renewed is not None
    assert renewed > old
