"""The BigQuery emulator for the tests: local-bigquery (REST and Storage Read APIs) from
.venv-bq (scripts/setup-bigquery-emulator), on free loopback ports, stopped at the end.

The official client libraries talk to it unchanged; see ``client`` and ``read_client``
for the wiring (the Storage Read client ignores ``api_endpoint`` and must be given a
channel to the emulator's gRPC port).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / ".venv-bq" / "bin" / "local-bigquery"
PROJECT = "test-project"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BigQueryEmulator:
    port: int
    grpc_port: int
    project: str = PROJECT

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        """A google-cloud-bigquery client for the emulator, anonymous, with short retries
        (the client's own default retries an emulator error for up to 600 s)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )

    def read_client(self) -> Any:
        """A Storage Read API client on the emulator's gRPC port."""
        import grpc
        from google.cloud.bigquery_storage_v1 import BigQueryReadClient
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )

        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))


@contextlib.contextmanager
def running_bigquery(timeout: float = 60.0) -> Iterator[BigQueryEmulator]:
    if not EMULATOR.exists():
        raise RuntimeError(
            f"BigQuery emulator not found at {EMULATOR}; run scripts/setup-bigquery-emulator"
        )
    port, grpc_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="deltaflow-bq-") as data:
        log = Path(data) / "emulator.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(EMULATOR),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--grpc-port", str(grpc_port), "--project", PROJECT),
                    *("--data-dir", str(Path(data) / "data")),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for(process, port, grpc_port, timeout, log)
            yield BigQueryEmulator(port, grpc_port)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(
    process: subprocess.Popen[bytes], port: int, grpc_port: int, timeout: float, log: Path
) -> None:
    """Until both ports accept connections (the emulator has no health route)."""
    deadline = time.monotonic() + timeout
    pending = [port, grpc_port]
    while pending:
        if process.poll() is not None:
            raise RuntimeError(f"the BigQuery emulator exited:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the BigQuery emulator did not start in {timeout:.0f} s")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", pending[0])) == 0:
                pending.pop(0)
                continue
        time.sleep(0.1)
