"""A MongoDB wire-protocol server for the tests: nx-27017 (on SQLite, in memory), on a
free loopback port, stopped at the end. pymongo reaches it over a real socket.

No real mongod can be installed here; nx-27017's gaps are listed in the project's test
stand notes: Decimal128 and BSON Timestamp cannot be stored, UUIDs lose their subtype,
queries on ObjectIds outside _id find nothing. The integration fixtures stay inside what
it supports; tests/unit/test_mongodb_convert.py covers the rest.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MongoServer:
    port: int

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"


def _executable() -> str:
    found = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
    if not Path(found).exists():
        raise RuntimeError("nx-27017 not found; run scripts/setup (it is a dev dependency)")
    return found


@contextlib.contextmanager
def running_mongodb(timeout: float = 30.0) -> Iterator[MongoServer]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="deltaflow-mongo-") as work:
        log = Path(work) / "server.log"
        command = [
            _executable(),
            *("--db", "memory", "--host", "127.0.0.1", "-p", str(port)),
            *("--log-file", str(log), "--pid-file", str(Path(work) / "server.pid")),
        ]
        with (Path(work) / "out.log").open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"nx-27017 exited: {(Path(work) / 'out.log').read_text()}")
                with socket.socket() as s:
                    s.settimeout(0.5)
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nx-27017 did not start in {timeout:.0f} s")
                time.sleep(0.1)
            yield MongoServer(port)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
