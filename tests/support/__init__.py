"""Servers the tests start themselves, and what they share: a free loopback port, and
waiting until a server listens on it."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the server to stop; kill it if it has not within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_ports(
    name: str,
    ports: list[int],
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Until every port accepts connections; a server process that exits first fails at
    once, with the end of its log."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{name} exited:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start on port {pending[0]} in {timeout:.0f} s")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", pending[0])) == 0:
                pending.pop(0)
                continue
        time.sleep(0.1)
