"""A BigQuery table, or a query's result, read as Arrow record batches over the
Storage Read API (each stream of the read session is a split), or over REST where that
API is not there.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from deltaflow.connectors._common import conform_batch
from deltaflow.connectors.bigquery.clients import client, job_retry, read_client
from deltaflow.connectors.protocol import RunResources, Split, split_table
from deltaflow.errors import SchemaError, SourceError
from deltaflow.schema.mappings import bigquery_logical, quote_backtick
from deltaflow.schema.types import Column, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import BigQueryConnection
    from deltaflow.config.sources import SqlSource

log = logging.getLogger("deltaflow.bigquery")


class BigQuerySource:
    """A table or a query's result, read over the Storage Read API as Arrow: each of the
    read session's streams is a split, so ``parallelism`` streams are read at once.

    Where the Storage Read API is not there (an emulator given only ``api_endpoint``, or
    a project that refuses it), the rows are read over the REST API instead, as one split:
    slower, but never a call to Google's endpoint when an emulator is configured.
    """

    def __init__(
        self,
        conn: BigQueryConnection,
        spec: SqlSource,
        resources: RunResources,
        parallelism: int,
        batch_size: int,
    ):
        self.conn = conn
        self.spec = spec
        self.resources = resources
        self.parallelism = max(1, parallelism)
        self.batch_size = batch_size
        self.name = spec.stream or (
            split_table(spec.table, conn.dataset)[1] if spec.table else "query"
        )
        self.table: Any = None  # the google.cloud.bigquery Table read
        self.table_path = ""  # projects/P/datasets/D/tables/T of what is read
        self.schema: TableSchema | None = None
        self.session: dict[str, Any] | None = None  # name, streams, arrow schema, expiry
        self.rest = bool(conn.api_endpoint) and not conn.storage_endpoint
        if self.rest:
            log.info("%s: no storage_endpoint for the emulator: reading over REST", self.name)

    def discover(self) -> TableSchema:
        bq = client(self.conn, self.resources)
        retry = job_retry(self.conn)
        if self.spec.query:
            job = bq.query(self.spec.query, retry=retry, timeout=self.conn.timeout)
            job.result(retry=retry, timeout=self.conn.timeout)
            table = bq.get_table(job.destination, retry=retry, timeout=self.conn.timeout)
        else:
            dataset, name = split_table(self.spec.table_name, self.conn.dataset)
            table = bq.get_table(
                f"{self.conn.project}.{dataset}.{name}", retry=retry, timeout=self.conn.timeout
            )
        self.table = table
        self.table_path = (
            f"projects/{table.project}/datasets/{table.dataset_id}/tables/{table.table_id}"
        )
        fields = {f.name: f for f in table.schema}
        wanted = self.spec.columns or list(fields)
        missing = [c for c in wanted if c not in fields]
        if missing:
            raise SchemaError(
                f"columns {', '.join(missing)} are not in BigQuery {self.name}",
                hint=f"choose from: {', '.join(fields)}",
            )
        self.schema = TableSchema(
            tuple(
                Column(n, bigquery_logical(fields[n]), fields[n].mode != "REQUIRED") for n in wanted
            )
        )
        return self.schema

    def splits(self) -> list[Split]:
        from google.api_core import exceptions
        from google.cloud.bigquery_storage_v1 import types

        assert self.schema is not None, "discover() first"
        if self.session is not None:  # resumed
            return [Split(i, {"stream": n}) for i, n in enumerate(self.session["streams"])]
        if self.rest:
            return [Split(0, {"rest": True})]
        options = types.ReadSession.TableReadOptions(selected_fields=self.schema.names)
        if self.spec.where:
            options.row_restriction = self.spec.where
        try:
            session = read_client(self.conn, self.resources).create_read_session(
                parent=f"projects/{self.conn.project}",
                read_session=types.ReadSession(
                    table=self.table_path, data_format=types.DataFormat.ARROW, read_options=options
                ),
                max_stream_count=self.parallelism,
                timeout=self.conn.timeout,
            )
        except (exceptions.PermissionDenied, exceptions.MethodNotImplemented) as exc:
            log.warning(
                "%s: the Storage Read API is not available (%s); reading over REST",
                self.name,
                type(exc).__name__,
            )
            self.rest = True
            return [Split(0, {"rest": True})]
        streams = [s.name for s in session.streams]
        self.session = {
            "name": session.name,
            "streams": streams,
            "schema": session.arrow_schema.serialized_schema,
            "expires": session.expire_time.isoformat() if session.expire_time else None,
        }
        return [Split(i, {"stream": name}) for i, name in enumerate(streams)] or [Split(0)]

    def resume_token(self) -> str:
        """The read session (its streams and schema), for a rerun within its lifetime."""
        import base64
        import json

        if self.session is None:
            return ""
        schema = base64.b64encode(self.session["schema"]).decode("ascii")
        return json.dumps({**self.session, "schema": schema})

    def resume(self, token: str) -> bool:
        """Take up the read session of ``token`` unless it expires within 10 minutes
        (BigQuery keeps a session for at least 6 hours)."""
        import base64
        import json

        try:
            session = json.loads(token)
            expires = session.get("expires")
            if expires and dt.datetime.fromisoformat(expires) < dt.datetime.now(
                dt.UTC
            ) + dt.timedelta(minutes=10):
                log.warning("%s: the read session of the last run expired; reading all", self.name)
                return False
            session["schema"] = base64.b64decode(session["schema"])
        except (ValueError, KeyError, TypeError):
            return False
        self.session = session
        return True

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        assert self.schema is not None
        target = self.schema.to_arrow()
        try:
            for batch in self._rest() if split.params.get("rest") else self._stream(split):
                yield conform_batch(batch.select(self.schema.names), target)
        except Exception as exc:
            if isinstance(exc, SourceError):
                raise
            raise SourceError(
                f"reading BigQuery stream '{self.name}' failed: {exc}",
                hint="check the table, the where filter and the connection",
            ) from exc

    def _stream(self, split: Split) -> Iterator[pa.RecordBatch]:
        """One stream of the read session."""
        import pyarrow as pa

        assert self.session is not None
        stream = split.params.get("stream")
        if stream is None:  # an empty table: BigQuery gives it no stream
            return
        arrow_schema = pa.ipc.read_schema(pa.py_buffer(self.session["schema"]))
        reader = read_client(self.conn, self.resources)
        for response in reader.read_rows(stream, timeout=self.conn.timeout):
            message = response.arrow_record_batch.serialized_record_batch
            yield pa.ipc.read_record_batch(pa.py_buffer(message), arrow_schema)

    def _rest(self) -> Iterator[pa.RecordBatch]:
        """The rows over the REST API, a page at a time; a ``where`` runs as a query."""
        assert self.schema is not None
        bq = client(self.conn, self.resources)
        retry = job_retry(self.conn)
        table = self.table
        if self.spec.where:
            columns = ", ".join(quote_backtick(n) for n in self.schema.names)
            name = quote_backtick(f"{table.project}.{table.dataset_id}.{table.table_id}")
            job = bq.query(
                f"SELECT {columns} FROM {name} WHERE {self.spec.where}",
                retry=retry,
                timeout=self.conn.timeout,
            )
            job.result(retry=retry, timeout=self.conn.timeout)
            table = bq.get_table(job.destination, retry=retry, timeout=self.conn.timeout)
        fields = [f for f in table.schema if f.name in set(self.schema.names)]
        rows = bq.list_rows(
            table,
            selected_fields=fields,
            page_size=self.batch_size,
            retry=retry,
            timeout=self.conn.timeout,
        )
        yield from rows.to_arrow_iterable()
