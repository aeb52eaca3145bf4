"""The pipeline service through its HTTP interface, on the embedded SQLite state and on
the suite's PostgreSQL: tenants, keys, runs of real DuckDB pipelines, isolation, quotas
and errors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import create_engine, select

from deltaflow.metadata.service_tables import metadata
from deltaflow.ops.workers import recover_lost_runs
from deltaflow.server import ServerSettings, create_app
from tests.support.service import ADMIN_KEY, client, wait_status, write_configs

ROOT = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'service.db'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return "postgresql+psycopg://" + dsn.split("://", 1)[1]


@pytest.fixture
def settings(database: str, tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        database=database,
        configs=write_configs(tmp_path / "configs"),
        state_dir=tmp_path / "state",
        admin_key=ADMIN_KEY,
        heartbeat_s=0.1,
        drain_s=0.0,
    )


@pytest.fixture
def api(settings: ServerSettings) -> Iterator[Any]:
    with client(create_app(settings)) as http:
        yield http


def onboard(api: Any, tenant_id: str, **extra: Any) -> dict[str, str]:
    answer = api.post("/api/v1/tenants", json={"tenant_id": tenant_id, **extra}, headers=ROOT)
    assert answer.status_code == 201, answer.text
    return {"X-API-Key": answer.json()["api_key"]}


def dump(database: str) -> str:
    """Every row of every service table, as text."""
    engine = create_engine(database)
    try:
        with engine.connect() as con:
            rows = {
                t.name: [list(r) for r in con.execute(select(t))] for t in metadata.sorted_tables
            }
    finally:
        engine.dispose()
    return json.dumps(rows, default=str)


def test_onboarding_twice_is_harmless_and_the_key_is_stored_as_a_hash(
    api: Any, database: str, tmp_path: Path
) -> None:
    warehouse = {"type": "duckdb", "path": str(tmp_path / "acme_wh.duckdb")}
    first = api.post(
        "/api/v1/tenants", json={"tenant_id": "acme", "warehouse": warehouse}, headers=ROOT
    )
    again = api.post(
        "/api/v1/tenants", json={"tenant_id": "acme", "warehouse": warehouse}, headers=ROOT
    )

    assert (first.status_code, again.status_code) == (201, 201)
    key = first.json()["api_key"]
    assert key.startswith("df_")
    assert first.json()["key"]["prefix"] == key[:12]
    assert again.json()["created"] is False
    assert again.json()["api_key"] is None
    keys = api.get("/api/v1/tenants/acme/keys", headers={"X-API-Key": key}).json()
    assert [k["key_id"] for k in keys] == [first.json()["key"]["key_id"]]
    assert key not in json.dumps(keys)
    stored = dump(database)
    assert key not in stored
    assert key[:12] in stored
    assert ADMIN_KEY not in stored
    with duckdb.connect(warehouse["path"], read_only=True) as con:
        schemas = {r[0] for r in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()}
    assert "acme" in schemas


def test_a_literal_warehouse_password_is_refused_and_never_stored(api: Any, database: str) -> None:
    warehouse = {"type": "postgres", "host": "127.0.0.1", "password": "hunter2-planted"}
    answer = api.post(
        "/api/v1/tenants", json={"tenant_id": "leaky", "warehouse": warehouse}, headers=ROOT
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "CONFIG_INVALID"
    assert "${env:" in answer.json()["hint"]
    assert "hunter2-planted" not in answer.text
    assert "hunter2-planted" not in dump(database)


def test_keys_are_checked_for_scope_revocation_and_expiry(api: Any) -> None:
    admin = onboard(api, "acme")
    reader = api.post("/api/v1/tenants/acme/keys", json={"scopes": ["read"]}, headers=admin)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    expired = api.post("/api/v1/tenants/acme/keys", json={"expires_at": past}, headers=admin)
    read_key = {"X-API-Key": reader.json()["api_key"]}

    refused = api.post("/api/v1/pipelines/run/acme/shop/numbers", json={}, headers=read_key)
    assert refused.status_code == 403
    assert refused.json()["code"] == "AUTH_FORBIDDEN"
    assert api.get("/api/v1/runs", headers=read_key).status_code == 200
    assert (
        api.get("/api/v1/runs", headers={"X-API-Key": expired.json()["api_key"]}).status_code == 401
    )
    assert (
        api.post("/api/v1/tenants", json={"tenant_id": "other"}, headers=admin).status_code == 403
    )

    key_id = reader.json()["key"]["key_id"]
    assert api.delete(f"/api/v1/tenants/acme/keys/{key_id}", headers=admin).status_code == 204
    revoked = api.get("/api/v1/runs", headers=read_key)
    assert revoked.status_code == 401
    assert revoked.json()["code"] == "AUTH_INVALID_KEY"
    assert revoked.json()["hint"]
    for wrong in ({"X-API-Key": "df_00000000_nope"}, {}):
        assert api.get("/api/v1/runs", headers=wrong).status_code == 401


def test_a_triggered_pipeline_runs_and_reads_back_with_steps_rows_dq_and_logs(
    api: Any, settings: ServerSettings
) -> None:
    acme = onboard(api, "acme")
    body = {"date": "2025-11-18", "variables": {"n": 5000}}
    answer = api.post("/api/v1/pipelines/run/acme/shop/numbers", json=body, headers=acme)

    assert answer.status_code == 202, answer.text
    run_id = answer.json()["pipeline_logging_id"]
    assert answer.json()["pipeline_id"] == "acme-numbers"
    run = wait_status(api, run_id, acme)
    assert run["status"] == "succeeded", run
    assert (run["rows_read"], run["rows_loaded"]) == (5000, 5000)
    assert [s["step_id"] for s in run["steps"]] == ["numbers", "numbers_quality"]
    assert run["steps"][0]["rows_loaded"] == 5000
    assert "numbers_quality" in run["dq_results"]
    assert run["dq_results"]["numbers_quality"]
    with duckdb.connect(str(settings.configs / "shop" / "acme.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), min(day) FROM raw.numbers").fetchone() == (
            5000,
            "2025-11-18",
        )
    lines = api.get(f"/api/v1/runs/{run_id}/logs", headers=acme).json()["lines"]
    assert any("succeeded" in line["message"] for line in lines)
    listed = api.get("/api/v1/runs?status=succeeded&pipeline=shop/numbers", headers=acme).json()
    assert [r["pipeline_logging_id"] for r in listed["runs"]] == [run_id]
    assert api.get("/api/v1/runs?status=failed", headers=acme).json()["runs"] == []
    # the run is in the tenant's own metadata tables too (the default warehouse here)
    meta = settings.state_dir / "warehouse.duckdb"
    with duckdb.connect(str(meta), read_only=True) as con:
        runs = con.execute(
            "SELECT pipeline_logging_id, tenant_id, pipeline_id, status, rows_loaded "
            "FROM acme.x_meta_pipeline_runs"
        ).fetchall()
        steps = con.execute(
            "SELECT step_id, ps_type, status FROM acme.x_meta_step_logs ORDER BY step_id"
        ).fetchall()
        checks = con.execute("SELECT count(*) FROM acme.x_meta_dq_results").fetchone()
    assert runs == [(run_id, "acme", "acme-numbers", "succeeded", 5000)]
    assert steps == [("numbers", "sync", "succeeded"), ("numbers_quality", "quality", "succeeded")]
    assert checks is not None
    assert checks[0] == len(run["dq_results"]["numbers_quality"]["checks"])


def test_runs_are_recorded_in_a_postgresql_tenant_warehouse(
    api: Any, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    monkeypatch.setenv("ACME_WAREHOUSE_DSN", pg_dsn)
    warehouse = {"type": "postgres", "dsn": "${env:ACME_WAREHOUSE_DSN}"}
    acme = onboard(api, "acme", warehouse=warehouse, meta_schema="acme_meta")
    run_id = api.post("/api/v1/pipelines/run/acme/shop/numbers", json={}, headers=acme).json()[
        "pipeline_logging_id"
    ]
    assert wait_status(api, run_id, acme)["status"] == "succeeded"

    with psycopg.connect(pg_dsn) as con:
        runs = con.execute(
            "SELECT pipeline_logging_id, status FROM acme_meta.x_meta_pipeline_runs"
        ).fetchall()
        steps = con.execute("SELECT count(*) FROM acme_meta.x_meta_step_logs").fetchone()
    assert runs == [(run_id, "succeeded")]
    assert steps == (2,)


def test_an_idempotency_key_returns_the_same_run(api: Any) -> None:
    acme = onboard(api, "acme")
    headers = {**acme, "Idempotency-Key": "order-42"}
    first = api.post("/api/v1/pipelines/run/acme/shop/numbers", json={}, headers=headers)
    again = api.post("/api/v1/pipelines/run/acme/shop/numbers", json={}, headers=headers)

    assert first.json()["pipeline_logging_id"] == again.json()["pipeline_logging_id"]
    assert (first.json()["created"], again.json()["created"]) == (True, False)
    wait_status(api, first.json()["pipeline_logging_id"], acme)
    assert len(api.get("/api/v1/runs", headers=acme).json()["runs"]) == 1


def test_a_running_pipeline_is_not_started_twice_and_cancel_stops_it(api: Any) -> None:
    acme = onboard(api, "acme")
    first = api.post("/api/v1/pipelines/run/acme/shop/slow", json={}, headers=acme).json()
    run_id = first["pipeline_logging_id"]
    wait_status(api, run_id, acme, until=("running",))

    second = api.post("/api/v1/pipelines/run/acme/shop/slow", json={}, headers=acme)
    assert second.status_code == 409
    assert second.json()["code"] == "RUN_CONFLICT"
    assert second.json()["run_id"] == run_id

    assert api.post(f"/api/v1/runs/{run_id}/cancel", headers=acme).status_code == 202
    run = wait_status(api, run_id, acme)
    assert run["status"] == "cancelled"
    assert run["error"]["code"] == "RUN_CANCELLED"
    assert run["steps"][0]["status"] == "failed"


def test_quotas_refuse_runs_and_requests_with_clear_errors(api: Any) -> None:
    tight = onboard(
        api, "tight", quotas={"concurrent_runs": 1, "runs_per_day": 2, "requests_per_minute": 1000}
    )
    slow = api.post("/api/v1/pipelines/run/tight/shop/slow", json={}, headers=tight).json()
    busy = api.post("/api/v1/pipelines/run/tight/shop/numbers", json={}, headers=tight)
    assert busy.status_code == 429
    assert busy.json()["code"] == "QUOTA_EXCEEDED"
    assert "concurrent" in busy.json()["message"]
    api.post(f"/api/v1/runs/{slow['pipeline_logging_id']}/cancel", headers=tight)
    wait_status(api, slow["pipeline_logging_id"], tight)
    done = api.post("/api/v1/pipelines/run/tight/shop/numbers", json={}, headers=tight).json()
    wait_status(api, done["pipeline_logging_id"], tight)
    daily = api.post("/api/v1/pipelines/run/tight/shop/numbers", json={}, headers=tight)
    assert daily.status_code == 429
    assert "today" in daily.json()["message"]

    chatty = onboard(api, "chatty", quotas={"requests_per_minute": 3})
    answers = [api.get("/api/v1/runs", headers=chatty) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["code"] == "RATE_LIMITED"
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60


def test_another_tenants_objects_are_not_found(api: Any) -> None:
    acme, other = onboard(api, "acme"), onboard(api, "other")
    run_id = api.post("/api/v1/pipelines/run/acme/shop/numbers", json={}, headers=acme).json()[
        "pipeline_logging_id"
    ]
    wait_status(api, run_id, acme)
    key_id = api.get("/api/v1/tenants/acme/keys", headers=acme).json()[0]["key_id"]

    missing = api.get("/api/v1/runs/no-such-run", headers=other)
    for method, path in [
        ("GET", f"/api/v1/runs/{run_id}"),
        ("GET", f"/api/v1/runs/{run_id}/logs"),
        ("POST", f"/api/v1/runs/{run_id}/cancel"),
    ]:
        answer = api.request(method, path, headers=other)
        assert answer.status_code == 404
        assert answer.json() == {**missing.json(), "message": f"no run '{run_id}'"}
    for method, path in [
        ("GET", "/api/v1/tenants/acme"),
        ("GET", "/api/v1/tenants/acme/keys"),
        ("DELETE", f"/api/v1/tenants/acme/keys/{key_id}"),
        ("POST", "/api/v1/pipelines/run/acme/shop/numbers"),
        ("GET", "/api/v1/runs?tenant_id=acme"),
    ]:
        answer = api.request(method, path, headers=other, json={} if method == "POST" else None)
        assert answer.status_code == 404, path
        assert answer.json()["code"] == "TENANT_NOT_FOUND", path
    assert api.get("/api/v1/runs", headers=other).json()["runs"] == []
    assert api.get("/api/v1/runs", headers=acme).json()["runs"][0]["pipeline_logging_id"] == run_id


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/pipelines/run/acme/shop/numbers", {"date": "18.11.2025"}, "body.date"),
        ("/api/v1/pipelines/run/acme/shop/numbers", {"variables": [1]}, "body.variables"),
        ("/api/v1/pipelines/run/acme/shop/numbers", {"surprise": 1}, "body.surprise"),
        ("/api/v1/tenants/acme/keys", {"scopes": ["root"]}, "body.scopes.0"),
        ("/api/v1/tenants/acme/keys", {"expires_at": "soon"}, "body.expires_at"),
    ],
)
def test_malformed_bodies_are_422_with_the_field(
    api: Any, path: str, body: Any, field: str
) -> None:
    acme = onboard(api, "acme")
    answer = api.post(path, json=body, headers=acme)
    assert answer.status_code == 422
    assert answer.json()["code"] == "REQUEST_INVALID"
    assert answer.json()["hint"]
    assert field in [f["path"] for f in answer.json()["fields"]]


def test_bad_requests_never_answer_500(api: Any) -> None:
    acme = onboard(api, "acme")
    run = "/api/v1/pipelines/run/acme/"
    cases = [
        api.post(run + "shop/numbers", content=b"{not json", headers=acme),
        api.post(run + "shop/numbers", content=b"\xff\xfe", headers=acme),
        api.post(run + "../../etc/passwd", json={}, headers=acme),
        api.post(run + "shop/%2e%2e/%2e%2e/secret", json={}, headers=acme),
        api.post(run + "shop/numbers", json={"steps": ["nope"]}, headers=acme),
        api.get("/api/v1/runs?cursor=%%%", headers=acme),
        api.get("/api/v1/runs?limit=-1", headers=acme),
        api.get("/api/v1/nothing-here", headers=acme),
        api.post("/api/v1/tenants", json={"tenant_id": "Bad Id!"}, headers=ROOT),
        api.post("/api/v1/pipelines/validate", content=b"\xff", headers=acme),
    ]
    for answer in cases:
        assert 400 <= answer.status_code < 500, answer.text
        assert {"code", "message"} <= set(answer.json()), answer.text
    assert cases[3].status_code == 404
    assert cases[3].json()["code"] == "PIPELINE_NOT_FOUND"
    assert cases[4].status_code == 422
    assert "nope" in cases[4].json()["message"]


def test_an_uploaded_pipeline_is_validated_with_file_and_line(api: Any) -> None:
    acme = onboard(api, "acme")
    bad = "pipeline_id: x\nsteps:\n  - step_id: a\n    type: sink\n"
    answer = api.post("/api/v1/pipelines/validate", content=bad, headers=acme)
    assert answer.status_code == 422
    found = answer.json()["diagnostics"]
    assert found
    assert found[0]["file"] == "pipeline.yml"
    assert found[0]["line"] == 4
    good = (Path(__file__).parents[2] / "examples" / "quickstart" / "quickstart.yml").read_text()
    assert api.post("/api/v1/pipelines/validate", content=good, headers=acme).json() == {
        "valid": True,
        "diagnostics": [],
    }
    listed = api.get("/api/v1/pipelines", headers=acme).json()
    assert [p["path"] for p in listed] == ["shop/numbers", "shop/slow"]
    shown = api.get("/api/v1/pipelines/shop/numbers", headers=acme).json()
    assert shown["pipeline_id"] == "acme-numbers"
    assert shown["config"]["steps"]


def test_a_run_whose_worker_was_lost_is_failed_and_retried(settings: ServerSettings) -> None:
    stalled = ServerSettings(**{**vars(settings), "start_workers": False})
    app = create_app(stalled)
    state = app.state.deltaflow
    with client(app) as http:
        acme = onboard(http, "acme")
        run_id = http.post("/api/v1/pipelines/run/acme/shop/numbers", json={}, headers=acme).json()[
            "pipeline_logging_id"
        ]
        store = state.service.store
        assert store.claim_run(run_id, "dead-worker") is not None  # a worker takes it, then dies
        state.service.lease = dt.timedelta(0)
        retries = recover_lost_runs(state.service)

        lost = http.get(f"/api/v1/runs/{run_id}", headers=acme).json()
        assert lost["status"] == "failed"
        assert lost["error"]["code"] == "WORKER_LOST"
        assert lost["error"]["category"] == "WORKER_LOST"
        assert [r.retry_of for r in retries] == [run_id]
        retry = http.get(f"/api/v1/runs/{retries[0].run_id}", headers=acme).json()
        assert (retry["status"], retry["trigger_type"], retry["attempt"]) == ("queued", "retry", 2)
        assert recover_lost_runs(state.service) == []  # recorded once
    with duckdb.connect(str(settings.state_dir / "warehouse.duckdb"), read_only=True) as con:
        recorded = con.execute(
            "SELECT status, error_code FROM acme.x_meta_pipeline_runs "
            "WHERE pipeline_logging_id = ?",
            [run_id],
        ).fetchall()
    assert recorded == [("failed", "WORKER_LOST")]
