"""Planted secrets never leave the service: the root admin key, a tenant's keys and a
PostgreSQL password given to a pipeline as ``${env:..}`` are searched in every response
(body and headers), every log record at DEBUG, every row of the service's tables, the
bytes of every file the service and its runs wrote, the tenant's x_meta tables and the
runs' log lines. A tenant key shows only in the one answer that creates it."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pytest
from sqlalchemy import create_engine, select

from deltaflow.metadata.service_tables import metadata
from deltaflow.server import ServerSettings, create_app
from tests.support.service import client, wait_status, write_configs

ROOT_KEY = "planted-root-admin-key-7c1e0a9f4b"
PG_PASSWORD = "planted-pg-password-5d2b8e61"
PG_PASSWORD_ENV = "DELTAFLOW_TEST_PLANTED_PG_PASSWORD"

PG_PIPELINE = """\
pipeline_id: "{{tenant_id}}-{name}"
connections:
  pg:
    type: postgres
    host: "{host}"
    port: {port}
    database: "{database}"
    user: "{user}"
    password: "${{env:{env}}}"
  wh: {{type: duckdb, path: "{{tenant_id}}-{name}.duckdb"}}
steps:
  - step_id: copy
    type: sync
    source: {{connection: pg, query: "SELECT 1 AS id, current_user AS who"}}
    destination: {{connection: wh, table: raw.{name}, write_mode: replace}}
"""


class Recorder:
    """A test client that keeps every answer it got."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.answers: list[Any] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        answer = self.http.request(method, url, **kwargs)
        self.answers.append(answer)
        return answer

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)


@pytest.fixture
def configs(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """shop/numbers and shop/slow, plus a pipeline reading the suite's PostgreSQL with the
    planted password (pg/ok), one whose server does not answer (pg/down) and one whose
    DSN, holding the password, names a port that cannot be (pg/baddsn)."""
    monkeypatch.setenv(PG_PASSWORD_ENV, PG_PASSWORD)
    root = write_configs(tmp_path / "configs")
    dsn = urlsplit(pg_dsn)
    (root / "pg").mkdir()
    server = {
        "host": dsn.hostname,
        "database": dsn.path.lstrip("/"),
        "user": dsn.username or "postgres",
        "env": PG_PASSWORD_ENV,
    }
    (root / "pg" / "ok.yml").write_text(PG_PIPELINE.format(name="ok", port=dsn.port, **server))
    down = PG_PIPELINE.format(name="down", port=free_port(), **server)
    (root / "pg" / "down.yml").write_text(down)
    bad_dsn = f"postgresql://{server['user']}:${{env:{PG_PASSWORD_ENV}}}@{dsn.hostname}:99999/x"
    (root / "pg" / "baddsn.yml").write_text(
        down.replace("  pg:\n", f"  pg:\n    dsn: '{bad_dsn}'\n")
    )
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def served(tmp_path: Path, configs: Path) -> Iterator[tuple[Recorder, ServerSettings, Any]]:
    settings = ServerSettings(
        database=f"sqlite:///{tmp_path / 'state' / 'service.db'}",
        configs=configs,
        state_dir=tmp_path / "state",
        admin_key=ROOT_KEY,
        heartbeat_s=0.1,
        drain_s=0.0,
    )
    app = create_app(settings)
    with client(app) as http:
        yield Recorder(http), settings, app


@pytest.mark.slow
def test_planted_secrets_never_leave_the_service(
    served: tuple[Recorder, ServerSettings, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="deltaflow")
    api, settings, app = served
    root = {"X-API-Key": ROOT_KEY}

    onboarded = api.request("POST", "/api/v1/tenants", json={"tenant_id": "acme"}, headers=root)
    assert onboarded.status_code == 201, onboarded.text
    first_key = onboarded.json()["api_key"]
    acme = {"X-API-Key": first_key}
    made = api.request("POST", "/api/v1/tenants/acme/keys", json={"scopes": ["read"]}, headers=acme)
    read_key = made.json()["api_key"]
    creating = {id(onboarded): first_key, id(made): read_key}

    runs = {}
    for pipeline in ("pg/ok", "pg/down", "pg/baddsn", "shop/numbers"):
        answer = api.request(
            "POST", f"/api/v1/pipelines/run/acme/{pipeline}", json={}, headers=acme
        )
        assert answer.status_code == 202, answer.text
        runs[pipeline] = answer.json()["pipeline_logging_id"]
    ended = {p: wait_status(api, run_id, acme) for p, run_id in runs.items()}
    assert ended["pg/ok"]["status"] == "succeeded", ended["pg/ok"]
    assert ended["pg/ok"]["rows_loaded"] == 1
    assert ended["pg/down"]["status"] == "failed", ended["pg/down"]
    assert ended["pg/down"]["error"]["message"]
    assert ended["pg/baddsn"]["status"] == "failed", ended["pg/baddsn"]

    read = {"X-API-Key": read_key}
    for url in (
        *(f"/api/v1/runs/{r}" for r in runs.values()),
        *(f"/api/v1/runs/{r}/logs" for r in runs.values()),
        "/api/v1/runs",
        "/api/v1/pipelines",
        "/api/v1/pipelines/pg/ok",
        "/api/v1/pipelines/pg/down",
        "/api/v1/tenants/acme",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ):
        assert api.get(url, headers=read).status_code == 200, url
    assert api.get("/api/v1/tenants/acme/keys", headers=acme).status_code == 200
    logs = [api.get(f"/api/v1/runs/{r}/logs", headers=acme).json() for r in runs.values()]
    assert all(page["lines"] for page in logs)
    shown = api.get("/api/v1/pipelines/pg/ok", headers=acme).json()
    assert shown["config"]["connections"]["pg"]["password"] != PG_PASSWORD
    # wrong, near-miss and misplaced keys are refused without echoing what was sent
    for headers in (
        {"X-API-Key": ROOT_KEY + "x"},
        {"X-API-Key": first_key[:-1]},
        {"Authorization": f"Bearer {ROOT_KEY}"},
    ):
        assert api.get("/api/v1/runs", headers=headers).status_code == 401
    invalid = api.request(
        "POST", "/api/v1/tenants/acme/keys", json={"scopes": [read_key]}, headers=acme
    )
    assert invalid.status_code == 422

    planted = [ROOT_KEY, PG_PASSWORD, first_key, read_key]
    for answer in api.answers:
        text = answer.text
        if id(answer) in creating:  # the one answer that shows a new key, in api_key only
            body = answer.json()
            assert body.pop("api_key") == creating[id(answer)]
            text = json.dumps(body)
        headers = json.dumps(dict(answer.headers))
        where = f"{answer.request.method} {answer.request.url}"
        assert_absent(planted, text, f"the answer to {where}")
        assert_absent(planted, headers, f"the headers of the answer to {where}")
    assert_absent(planted, caplog.text, "the log")
    for record in caplog.records:
        assert_absent(planted, repr(record.__dict__), f"the log record {record.getMessage()!r}")
    assert_absent(planted, repr(app.state.deltaflow), "the app's state repr")
    assert_absent(planted, repr(settings), "the settings repr")
    assert_absent(planted, service_tables(settings.database_url()), "the service's tables")
    assert_absent(planted, warehouse_tables(tmp_path), "the DuckDB files' tables")
    for file in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        data = file.read_bytes()
        for value in planted:
            assert value.encode() not in data, f"{value[:12]}... is in the bytes of {file}"


def assert_absent(planted: list[str], text: str, where: str) -> None:
    found = [value[:12] + "..." for value in planted if value in text]
    assert not found, f"{where} holds the planted secret(s) {found}"


def service_tables(url: str) -> str:
    """Every row of every service table, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            rows = {
                t.name: [list(r) for r in con.execute(select(t))] for t in metadata.sorted_tables
            }
    finally:
        engine.dispose()
    assert rows["runs"]
    assert rows["run_logs"]
    return json.dumps(rows, default=str)


def warehouse_tables(folder: Path) -> str:
    """Every row of every table of every DuckDB file under ``folder`` (the tenant's x_meta
    tables, the runs' destinations), as text."""
    dumped: dict[str, Any] = {}
    for file in folder.rglob("*.duckdb"):
        with duckdb.connect(str(file), read_only=True) as con:
            tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
            for schema, table in tables:
                rows = con.execute(
                    f'SELECT CAST(COLUMNS(*) AS VARCHAR) FROM "{schema}"."{table}"'
                ).fetchall()
                dumped[f"{file.name}:{schema}.{table}"] = rows
    assert any(".x_meta_pipeline_runs" in name for name in dumped), sorted(dumped)
    return json.dumps(dumped, default=str)
