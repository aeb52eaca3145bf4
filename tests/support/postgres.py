"""A real PostgreSQL server for the tests: initdb into a temporary directory, started on a
free loopback port, stopped at the end. Run as 'nobody' when the tests run as root
(initdb and postgres refuse root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, wait_for_ports


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found; scripts/setup installs them "
        "(Debian package 'postgresql')"
    )


@dataclass
class PostgresServer:
    port: int
    user: str = "postgres"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="deltaflow-pg-"))
    data = root / "data"
    run_as = "nobody" if os.geteuid() == 0 else None
    if run_as:
        shutil.chown(root, user=run_as)
        root.chmod(0o700)
    port = free_port()
    _run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        run_as,
    )
    settings = [
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={root}",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=50",
        "-c",
        "shared_buffers=128MB",
    ]
    log = root / "server.log"
    _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(settings),
            "start",
        ],
        run_as,
    )
    try:
        wait_for_ports("PostgreSQL", [port], 30.0)
        yield PostgresServer(port)
    finally:
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            user=run_as,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def _run(command: list[str], user: str | None) -> None:
    result = subprocess.run(
        command, user=user, capture_output=True, text=True, check=False, cwd="/"
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:1])} failed:\n{result.stdout}\n{result.stderr}")
