"""The BigQuery emulator for the tests: local-bigquery (REST and Storage Read APIs) from
.venv-bq (scripts/setup-bigquery-emulator), on free loopback ports, stopped at the end.

The official client libraries talk to it unchanged; see ``client`` and ``read_client``
for the wiring (the Storage Read client ignores ``api_endpoint`` and must be given a
channel to the emulator's gRPC port).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import free_port, stop, wait_for_ports

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / ".venv-bq" / "bin" / "local-bigquery"
PROJECT = "test-project"


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
    port, grpc_port = free_port(), free_port()
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
            wait_for_ports("the BigQuery emulator", [port, grpc_port], timeout, process, log)
            yield BigQueryEmulator(port, grpc_port)
        finally:
            stop(process)
