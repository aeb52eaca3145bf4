"""``deltaflow serve`` as a user starts it, called as the README's Service section does:
onboard a tenant, trigger the quickstart pipeline for it, read the run back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, stop, wait_for_ports
from tests.support.service import wait_status

EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart"
ADMIN_KEY = "e2e-admin-key-0123456789abcdef"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """The README's set-up: the quickstart under configs/shop, then ``deltaflow serve``."""
    shop = tmp_path / "configs" / "shop"
    shop.mkdir(parents=True)
    shutil.copy(EXAMPLE / "quickstart.yml", shop)
    subprocess.run(
        [sys.executable, "-m", "deltaflow.sample_data", "quickstart", "configs/shop/data"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=300,
    )
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deltaflow",
                "serve",
                "--configs",
                "configs",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DELTAFLOW_ADMIN_KEY": ADMIN_KEY},
        )
    try:
        wait_for_ports("deltaflow serve", [port], 60, process, log)
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        if process.poll() is None:
            stop(process)


@pytest.mark.slow
def test_serve_onboards_triggers_the_quickstart_and_reads_the_run_back(
    served: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, url, log = served
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/readyz").json()["status"] == "ready"

        onboarded = http.post(
            "/api/v1/tenants", json={"tenant_id": "acme"}, headers={"X-API-Key": ADMIN_KEY}
        )
        assert onboarded.status_code == 201, onboarded.text
        key = {"X-API-Key": onboarded.json()["api_key"]}
        triggered = http.post(
            "/api/v1/pipelines/run/acme/shop/quickstart", json={"date": "2025-11-18"}, headers=key
        )
        assert triggered.status_code == 202, triggered.text
        run_id = triggered.json()["pipeline_logging_id"]
        run = wait_status(http, run_id, key, timeout=240)

    assert run["status"] == "succeeded", run
    assert run["rows_loaded"] == 300_000
    assert [s["step_id"] for s in run["steps"]] == ["customers", "orders", "order_items", "events"]

    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down (the workers stopped, the store closed), then ends by the signal
    assert process.wait(30) in (0, -signal.SIGTERM)
    text = log.read_text()
    assert ADMIN_KEY not in text
    assert key["X-API-Key"] not in text
    assert "Traceback" not in text


def test_no_auth_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "deltaflow", "serve", "--no-auth", "--host", "0.0.0.0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--no-auth refuses to listen on '0.0.0.0'" in done.stderr
    assert "127.0.0.1" in done.stderr


def test_serve_without_an_admin_key_says_how_to_set_one(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DELTAFLOW_ADMIN_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "deltaflow", "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 2
    assert "DELTAFLOW_ADMIN_KEY" in done.stderr
