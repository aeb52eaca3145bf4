"""The run's BigQuery clients (REST and Storage Read), the retry policy every call
uses, and SQL run straight on a connection (quality checks, metrics, quarantine).

Every API call has a timeout (``timeout`` on the connection); the client retries only
errors BigQuery marks as retryable, within that deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deltaflow.errors import ConnectionFailedError

if TYPE_CHECKING:
    from deltaflow.config.connections import BigQueryConnection
    from deltaflow.connectors.protocol import RunResources


def client(conn: BigQueryConnection, resources: RunResources) -> Any:
    """The run's client for this connection, made once."""
    key = f"bigquery:{conn.project}:{conn.api_endpoint or ''}"
    if key not in resources.handles:
        from google.api_core.client_options import ClientOptions
        from google.cloud import bigquery

        credentials: Any = None
        if conn.key_file:
            from google.oauth2 import service_account

            path = resources.resolve(conn.key_file)
            try:
                credentials = service_account.Credentials.from_service_account_file(str(path))  # type: ignore[no-untyped-call]
            except (OSError, ValueError) as exc:
                raise ConnectionFailedError(
                    f"cannot read the BigQuery service-account key file '{conn.key_file}': "
                    f"{type(exc).__name__}",
                    hint="check key_file: a JSON key of a service account, readable here",
                ) from None
        elif conn.credentials == "anonymous" or (conn.api_endpoint and not conn.credentials):
            # An emulator needs no credentials: looking for default ones may call Google.
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        options = ClientOptions(api_endpoint=conn.api_endpoint) if conn.api_endpoint else None
        made = bigquery.Client(
            project=conn.project,
            credentials=credentials,
            location=conn.location,
            client_options=options,
        )
        resources.handles[key] = made
        resources.closers.append(made.close)
    return resources.handles[key]


def read_client(conn: BigQueryConnection, resources: RunResources) -> Any:
    """The run's Storage Read API client: on ``storage_endpoint`` without TLS (emulators),
    else Google's endpoint with the connection's credentials."""
    key = f"bigquery-read:{conn.project}:{conn.storage_endpoint or ''}"
    if key not in resources.handles:
        from google.cloud.bigquery_storage_v1 import BigQueryReadClient

        if conn.storage_endpoint:
            import grpc
            from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
                BigQueryReadGrpcTransport,
            )

            channel = grpc.insecure_channel(conn.storage_endpoint)
            made = BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))  # type: ignore[no-untyped-call]
            resources.closers.append(channel.close)
        else:
            made = BigQueryReadClient(credentials=client(conn, resources)._credentials)  # type: ignore[no-untyped-call]
        resources.handles[key] = made
    return resources.handles[key]


def job_retry(conn: BigQueryConnection) -> Any:
    """The client's retry of retryable errors only, within the connection's timeout."""
    from google.cloud.bigquery import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(conn.timeout)
