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
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, stop, wait_for_ports


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
    port = free_port()
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
            wait_for_ports("nx-27017", [port], timeout, process, Path(work) / "out.log")
            yield MongoServer(port)
        finally:
            stop(process)
