"""The pipeline service under test: small DuckDB pipelines in a configs folder, and an
app over SQLite or the suite's PostgreSQL driven through Starlette's test client."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import httpx

with warnings.catch_warnings():  # Starlette prefers the httpx2 fork; httpx is what we ship
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

ADMIN_KEY = "root-admin-key-for-tests-0123456789"

NUMBERS = """\
pipeline_id: "{tenant_id}-numbers"
description: numbers for {tenant_id}
variables:
  n: "1000"
connections:
  wh:
    type: duckdb
    path: "{tenant_id}.duckdb"
steps:
  - step_id: numbers
    type: sync
    source: {connection: wh, query: "SELECT range AS id, '{date}' AS day FROM range({n})"}
    destination: {connection: wh, table: raw.numbers, write_mode: replace}
  - step_id: numbers_quality
    type: quality
    connection: wh
    table: raw.numbers
    checks:
      - {check: not_null, column: id}
      - {check: row_count, min: 1}
"""

#: a run that reads for long enough to be seen running, stopped by cancel
SLOW = """\
pipeline_id: "{tenant_id}-slow"
connections:
  wh:
    type: duckdb
    path: "{tenant_id}-slow.duckdb"
steps:
  - step_id: slow
    type: sync
    batch_size: 2000
    source: {connection: wh, query: "SELECT range AS id FROM range(2000000000)"}
    destination: {connection: wh, table: raw.slow, write_mode: replace}
"""


def write_configs(root: Path) -> Path:
    """A configs folder with ``shop/numbers`` and ``shop/slow``."""
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "numbers.yml").write_text(NUMBERS)
    (root / "shop" / "slow.yml").write_text(SLOW)
    return root


def client(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def wait_status(
    http: httpx.Client | TestClient,
    run_id: str,
    headers: dict[str, str],
    until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Poll the run until its status is one of ``until``; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if body.get("status") in until or time.monotonic() > deadline:
            assert body.get("status") in until, body
            return body
        time.sleep(0.05)
