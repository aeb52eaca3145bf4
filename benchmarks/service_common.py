"""What the service benchmarks share: starting and stopping `deltaflow` processes on
loopback, the admin key and tenant they use, listing a tenant's runs, percentiles."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
TENANT = "bench"
ENDED = ("succeeded", "failed", "cancelled")


def pct(values: list[float], p: int) -> float:
    """The p-th percentile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(work: Path, name: str, command: list[str]) -> subprocess.Popen[bytes]:
    """``python -m deltaflow <command>`` in ``work``, its output in ``<name>.log``."""
    env = {
        **os.environ,
        "DELTAFLOW_ADMIN_KEY": ADMIN_KEY,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    with (work / f"{name}.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "deltaflow", *command],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_server(work: Path, options: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """`deltaflow serve` on a free loopback port, once it answers /readyz; its URL."""
    port = free_port()
    process = start(work, "serve", ["serve", *options, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"deltaflow serve ended:\n{(work / 'serve.log').read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(process)
    raise SystemExit("deltaflow serve did not answer /readyz within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 60 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def list_runs(http: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every run of the tenant, page by page (at most 1,000 pages)."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"tenant_id": TENANT, "limit": 500}
    for _ in range(1000):
        page = http.get("/api/v1/runs", params=params, headers=headers)
        page.raise_for_status()
        body = page.json()
        found.extend(body["runs"])
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]
    return found
