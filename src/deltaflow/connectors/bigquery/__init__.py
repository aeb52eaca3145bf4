"""BigQuery, as source and destination, through the official client libraries.

A source reads a table, or the result of a query, over the Storage Read API as Arrow
record batches; each stream of the read session is a split.

Tables are created from the logical schema (``deltaflow.schema.mappings.BIGQUERY_TYPES``)
with their partitioning and clustering. Loads write the batches to a Parquet file and
load it with a load job (never streaming inserts): ``append`` and ``replace`` load
straight into the table (a load job is atomic: WRITE_APPEND or WRITE_TRUNCATE, which
keeps partitioning and clustering); ``merge`` loads a staging table next to the target
and applies one MERGE on the primary key, the last row of a repeated key winning.

Every API call has a timeout (``timeout`` on the connection); the client retries only
errors BigQuery marks as retryable, within that deadline.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.connectors._common import (
    STATE_COLUMNS,
    STATE_TABLE,
    check_merge_keys,
    conform_batch,
    relay_failures,
    schema_change_error,
    state_from_row,
    state_params,
)
from deltaflow.connectors.protocol import LoadResult, RunResources, Split, StateRecord, split_table
from deltaflow.errors import ConnectionFailedError, LoadError, SchemaError, SourceError
from deltaflow.faults import crash_point
from deltaflow.schema.mappings import (
    bigquery_logical,
    bigquery_type,
    parquet_type,
    quote_backtick,
)
from deltaflow.schema.types import Column, LogicalType, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import BigQueryConnection, WriteMode
    from deltaflow.config.models import DestinationSpec, PartitionSpec, SourceSpec

log = logging.getLogger("deltaflow.bigquery")

STAGING_PREFIX = "__deltaflow_"
#: the staged row's position, so a merge keeps the last row of a repeated key
SEQUENCE = "__deltaflow_seq"


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
        spec: SourceSpec,
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
        retry = _retry(self.conn)
        if self.spec.query:
            job = bq.query(self.spec.query, retry=retry, timeout=self.conn.timeout)
            job.result(retry=retry, timeout=self.conn.timeout)
            table = bq.get_table(job.destination, retry=retry, timeout=self.conn.timeout)
        else:
            assert self.spec.table is not None
            dataset, name = split_table(self.spec.table, self.conn.dataset)
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
        retry = _retry(self.conn)
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


def _retry(conn: BigQueryConnection) -> Any:
    """The client's retry of retryable errors only, within the connection's timeout."""
    from google.cloud.bigquery import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(conn.timeout)


class BigQueryDestination:
    def __init__(self, conn: BigQueryConnection, spec: DestinationSpec, resources: RunResources):
        assert spec.table is not None
        self.conn = conn
        self.spec = spec
        self.resources = resources
        self.dataset, self.table = split_table(spec.table, conn.dataset)
        self.name = f"{self.dataset}.{self.table}"
        self.table_id = f"{conn.project}.{self.dataset}.{self.table}"
        self.columns: dict[str, str] = {}  # name -> field type of the existing table
        self.renamed: dict[str, str] = {}  # source column -> its valid BigQuery name
        self.nested_renamed: dict[str, str] = {}  # path of a nested field -> its new path
        self.jobs: dict[str, int] = {}
        self.ensured: set[str] = set()  # companion tables known to exist

    @property
    def client(self) -> Any:
        return client(self.conn, self.resources)

    @property
    def retry(self) -> Any:
        return _retry(self.conn)

    def _get_table(self, table_id: str) -> Any:
        return self.client.get_table(table_id, retry=self.retry, timeout=self.conn.timeout)

    def _find_table(self, table_id: str) -> Any:
        """The table, or None when it (or its dataset) does not exist."""
        from google.api_core.exceptions import NotFound

        try:
            return self._get_table(table_id)
        except NotFound:
            return None

    def _target(self, table: str | None = None) -> str:
        return quote_backtick(f"{self.conn.project}.{self.dataset}.{table or self.table}")

    def _query(
        self, sql: str, params: dict[str, str | None] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one query job (``@name`` parameters are STRINGs); its bytes processed and
        billed go into the run's details."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(name, "STRING", value)
                for name, value in (params or {}).items()
            ]
        )
        job = self.client.query(sql, job_config=config, retry=self.retry, timeout=self.conn.timeout)
        rows = [tuple(r) for r in job.result(retry=self.retry, timeout=self.conn.timeout)]
        self._count("query_jobs", 1)
        self._count("bytes_processed", job.total_bytes_processed or 0)
        self._count("bytes_billed", job.total_bytes_billed or 0)
        return rows

    def _count(self, key: str, value: int) -> None:
        self.jobs[key] = self.jobs.get(key, 0) + int(value)

    # ------------------------------------------------------------------ prepare

    def prepare(self, schema: TableSchema) -> None:
        """Create the dataset and the table, or evolve the table to the schema in place
        (partitioning and clustering are kept).

        Column names BigQuery does not accept are made valid first (see
        ``bigquery_names``); each renaming is logged and recorded in the run's details.
        """
        self.renamed = {old: new for old, new in bigquery_names(schema.names).items() if old != new}
        self.nested_renamed = {}
        schema = TableSchema(
            tuple(
                replace(
                    c,
                    name=self._column(c.name),
                    type=_valid_fields(c.type, c.name, self.nested_renamed),
                )
                for c in schema.columns
            ),
            tuple(self._column(k) for k in schema.primary_key),
        )
        for old, new in (self.renamed | self.nested_renamed).items():
            log.warning("column %r is written to BigQuery %s as %r", old, self.name, new)

        self.client.create_dataset(
            f"{self.conn.project}.{self.dataset}",
            exists_ok=True,
            retry=self.retry,
            timeout=self.conn.timeout,
        )
        existing = self._find_table(self.table_id)
        if existing is None:
            self._query(self._create_sql(schema))
        else:
            self._evolve(existing, schema)
        self.columns = {f.name: f.field_type for f in self._get_table(self.table_id).schema}

    def _evolve(self, existing: Any, schema: TableSchema) -> None:
        """Add new columns; under ``evolve`` also relax REQUIRED to NULLABLE and widen
        types where BigQuery allows it (INT64 -> NUMERIC -> BIGNUMERIC, more digits)."""
        policy = self.spec.on_schema_change
        fields = {f.name.lower(): f for f in existing.schema}
        for column in schema.columns:
            field = fields.get(column.name.lower())
            wanted = bigquery_type(column.type)
            name = quote_backtick(column.name)
            if field is None:
                if policy == "fail":
                    raise schema_change_error(
                        self.name, "BigQuery", column.name, "(missing)", wanted
                    )
                self._query(f"ALTER TABLE {self._target()} ADD COLUMN {name} {wanted}")
                continue
            have = bigquery_logical(field)
            wider = _widened(have, column.type)
            if wider is not None:
                if policy != "evolve" or not wider:
                    current = bigquery_type(have)
                    raise schema_change_error(self.name, "BigQuery", column.name, current, wanted)
                log.info("widening %s.%s from %s to %s", self.name, column.name, have, wider)
                self._query(
                    f"ALTER TABLE {self._target()} ALTER COLUMN {name} SET DATA TYPE {wider}"
                )
            if field.mode == "REQUIRED" and column.nullable:
                if policy != "evolve":
                    raise schema_change_error(
                        self.name, "BigQuery", column.name, "REQUIRED", "NULLABLE"
                    )
                log.info("relaxing %s.%s to NULLABLE", self.name, column.name)
                self._query(f"ALTER TABLE {self._target()} ALTER COLUMN {name} DROP NOT NULL")

    def _column(self, name: str) -> str:
        """The BigQuery name of a source column (config may use either name)."""
        return self.renamed.get(name, name)

    def _create_sql(self, schema: TableSchema) -> str:
        keys = {self._column(k) for k in self.spec.primary_key} or set(schema.primary_key)
        columns = ", ".join(
            f"{quote_backtick(c.name)} {bigquery_type(c.type)}"
            + (" NOT NULL" if (c.name in keys or not c.nullable) and c.type.kind != "list" else "")
            for c in schema.columns
        )
        sql = f"CREATE TABLE {self._target()} ({columns})"
        partition = self.spec.partition_by
        if partition is not None:
            sql += f" PARTITION BY {self._partition_expression(partition, schema)}"
        cluster_by = [self._column(c) for c in self.spec.cluster_by]
        if cluster_by:
            missing = [c for c in cluster_by if c not in schema.names]
            if missing:
                raise SchemaError(
                    f"cluster_by names {', '.join(missing)}, not a column of {self.name}",
                    hint=f"cluster by columns of the source: {', '.join(schema.names)}",
                )
            sql += " CLUSTER BY " + ", ".join(quote_backtick(c) for c in cluster_by)
        options = []
        if partition is not None and partition.expiration_days is not None:
            options.append(f"partition_expiration_days = {partition.expiration_days}")
        if partition is not None and partition.require_filter:
            options.append("require_partition_filter = TRUE")
        if options:
            sql += f" OPTIONS ({', '.join(options)})"
        return sql

    def _partition_expression(self, partition: PartitionSpec, schema: TableSchema) -> str:
        unit = partition.granularity
        if partition.field is None:  # ingestion time
            if unit == "DAY":
                return "_PARTITIONDATE"
            return f"TIMESTAMP_TRUNC(_PARTITIONTIME, {unit})"
        column = schema.column(self._column(partition.field))
        if column is None or column.type.kind not in ("date", "timestamp"):
            found = "missing" if column is None else f"a {column.type} column"
            raise SchemaError(
                f"partition_by.field {partition.field} of {self.name} is {found}",
                hint="partition by a DATE, TIMESTAMP or DATETIME column, or leave field "
                "out to partition by ingestion time",
            )
        name = quote_backtick(column.name)
        if column.type.kind == "date":
            return name if unit == "DAY" else f"DATE_TRUNC({name}, {unit})"
        function = "TIMESTAMP_TRUNC" if column.type.tz else "DATETIME_TRUNC"
        return f"{function}({name}, {unit})"

    # ------------------------------------------------------------------ load

    def load(
        self,
        batches: pa.RecordBatchReader,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
        state: Callable[[], list[StateRecord]] | None = None,
        rejected: Callable[[], pa.Table | None] | None = None,
    ) -> LoadResult:
        """Write the batches to Parquet, rows BigQuery cannot hold set aside (see
        ``bigquery_values``). A plain append or replace is one load job; anything more
        (a merge, state to commit, rows to quarantine) loads a staging table and applies
        it, the quarantine and the state in one transaction."""
        upstream: list[BaseException] = []
        relayed = _renamed(relay_failures(batches, upstream), self.renamed, self.nested_renamed)
        primary_key = tuple(self._column(k) for k in primary_key)
        with tempfile.TemporaryDirectory(prefix="deltaflow-bq-") as work:
            path = Path(work) / "batch.parquet"
            try:
                written = _write_parquet(relayed, path, sequence=write_mode == "merge")
                held = self._rejected(written.rejected, rejected() if rejected else None)
                if state is None and write_mode != "merge" and held is None:
                    self._load_job(path, self.table, write_mode)
                else:
                    names = relayed.schema.names
                    self._apply(path, write_mode, primary_key, names, held, state)
            except BaseException as exc:
                if upstream:
                    raise upstream[0] from None
                if isinstance(exc, (LoadError, SchemaError)) or not isinstance(exc, Exception):
                    raise
                raise LoadError(
                    f"loading into BigQuery table {self.name} failed: {exc}",
                    hint="check that the source columns fit the table's types",
                ) from exc
        table = self._get_table(self.table_id)
        details: dict[str, Any] = dict(self.jobs)
        if self.renamed or self.nested_renamed:
            details["renamed_columns"] = self.renamed | self.nested_renamed
        quarantined = 0 if held is None else held.num_rows
        if quarantined:
            details["quarantine_table"] = f"{self.dataset}.{self.table}{quarantine.SUFFIX}"
        return LoadResult(written.rows, int(table.num_rows or 0), details, quarantined)

    def _rejected(
        self, parts: list[tuple[pa.Table, pa.Array[Any]]], upstream: pa.Table | None
    ) -> pa.Table | None:
        """The quarantine records of the rows BigQuery cannot hold (logged), with those
        that came from upstream."""
        import pyarrow as pa

        if not parts:
            return upstream
        records = pa.concat_tables(
            quarantine.records(
                rows,
                reasons,
                "BQ_VALUE_OUT_OF_RANGE",
                run_id=self.resources.run_id,
                stream=self.name,
            )
            for rows, reasons in parts
        )
        log.warning(
            "%d rows of %s hold values BigQuery cannot store; they go to %s%s (first: %s)",
            records.num_rows,
            self.name,
            self.table,
            quarantine.SUFFIX,
            records.column("reason")[0],
        )
        return records if upstream is None else pa.concat_tables([upstream, records])

    def _load_job(self, path: Path, table: str, write_mode: WriteMode) -> None:
        from google.cloud import bigquery

        options = bigquery.format_options.ParquetOptions()  # type: ignore[no-untyped-call]
        options.enable_list_inference = True
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=(
                bigquery.WriteDisposition.WRITE_TRUNCATE
                if write_mode == "replace"
                else bigquery.WriteDisposition.WRITE_APPEND
            ),
            parquet_options=options,
        )
        with path.open("rb") as data:
            job = self.client.load_table_from_file(
                data,
                f"{self.conn.project}.{self.dataset}.{table}",
                job_config=config,
                timeout=self.conn.timeout,
            )
        job.result(retry=self.retry, timeout=self.conn.timeout)
        self._count("load_jobs", 1)

    def _apply(
        self,
        path: Path,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
        names: list[str],
        rejected: pa.Table | None,
        state: Callable[[], list[StateRecord]] | None,
    ) -> None:
        """Load a staging table, then in one transaction: apply it to the table, add the
        rejected rows to the quarantine table and write the incremental state."""
        import pyarrow.parquet as pq

        staging = f"{STAGING_PREFIX}{self.table}_{uuid.uuid4().hex[:12]}"
        staged = [staging]
        try:
            self._load_job(path, staging, "replace")
            statements = self._apply_sql(write_mode, staging, primary_key, names)
            params: dict[str, str | None] = {}
            if rejected is not None:
                held = self._ensure(quarantine.SUFFIX, QUARANTINE_DDL)
                staged.append(f"{staging}_q")
                pq.write_table(rejected, path)
                self._load_job(path, staged[-1], "replace")
                statements.append(f"INSERT INTO {held} SELECT * FROM {self._target(staged[-1])}")
            for i, record in enumerate(state() if state else []):
                held = self._ensure(None, STATE_DDL)
                statements += _state_sql(held, record, i, params)
            crash_point("after_load_before_commit")
            script = ";\n".join(["BEGIN TRANSACTION", *statements, "COMMIT TRANSACTION"])
            self._query(script + ";", params)
            crash_point("after_commit")
        finally:
            for table in staged:
                self.client.delete_table(
                    f"{self.conn.project}.{self.dataset}.{table}",
                    not_found_ok=True,
                    retry=self.retry,
                    timeout=self.conn.timeout,
                )

    def _apply_sql(
        self, write_mode: WriteMode, staging: str, primary_key: tuple[str, ...], names: list[str]
    ) -> list[str]:
        """The statements that apply a staging table with this write mode.

        A merge deletes the rows whose key is staged and inserts the last staged row of
        each key (BigQuery's MERGE is avoided: it does not run inside a transaction on
        every implementation of the API). When the partition column is part of the key,
        the delete is pruned to the partitions the batch touches."""
        target, staged = self._target(), self._target(staging)
        columns = ", ".join(quote_backtick(n) for n in names)
        insert = f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staged}"
        if write_mode == "append":
            return [insert]
        if write_mode == "replace":
            return [f"DELETE FROM {target} WHERE TRUE", insert]
        check_merge_keys(
            self.name,
            primary_key,
            lambda where: int(
                self._query(f"SELECT count(*) FROM {staged} WHERE {where.replace(chr(34), '`')}")[
                    0
                ][0]
            ),
        )
        keys = ", ".join(quote_backtick(k) for k in primary_key)
        if len(primary_key) == 1:
            matched = f"{keys} IN (SELECT {keys} FROM {staged})"
        else:
            pairs = " AND ".join(
                f"s.{quote_backtick(k)} = t.{quote_backtick(k)}" for k in primary_key
            )
            matched = f"EXISTS (SELECT 1 FROM {staged} AS s WHERE {pairs})"
        latest = (
            f"SELECT {columns} FROM {staged} WHERE TRUE QUALIFY ROW_NUMBER() OVER "
            f"(PARTITION BY {keys} ORDER BY {quote_backtick(SEQUENCE)} DESC) = 1"
        )
        return [
            f"DELETE FROM {target} AS t WHERE {matched}{self._pruned(staged, primary_key)}",
            f"INSERT INTO {target} ({columns}) {latest}",
        ]

    def _pruned(self, staged: str, primary_key: tuple[str, ...]) -> str:
        """`` AND <partition column> BETWEEN <first> AND <last>`` of the staged rows, when
        the partition column is part of the key (so no matching row lies outside)."""
        partition = self.spec.partition_by
        if partition is None or partition.field is None:
            return ""
        column = self._column(partition.field)
        if column not in primary_key:
            return ""
        quoted = quote_backtick(column)
        ((low, high),) = self._query(f"SELECT MIN({quoted}), MAX({quoted}) FROM {staged}")
        kind = self.columns.get(column, "")
        log.debug("merge into %s pruned to %s from %s to %s", self.name, column, low, high)
        return f" AND t.{quoted} BETWEEN {_literal(low, kind)} AND {_literal(high, kind)}"

    def _ensure(self, suffix: str | None, ddl: str) -> str:
        """The quoted name of a table next to the destination (``<table><suffix>``, or the
        state table), created with ``ddl`` when missing."""
        name = f"{self.table}{suffix}" if suffix else STATE_TABLE
        target = self._target(name)
        if name not in self.ensured:
            self._query(ddl.format(table=target))
            self.ensured.add(name)
        return target

    # ------------------------------------------------------------------ state

    def read_states(self, prefix: str) -> list[StateRecord]:
        if self._find_table(f"{self.conn.project}.{self.dataset}.{STATE_TABLE}") is None:
            return []
        rows = self._query(
            f"SELECT {STATE_COLUMNS} FROM {self._target(STATE_TABLE)} "
            "WHERE STARTS_WITH(state_key, @prefix) ORDER BY state_key",
            {"prefix": prefix},
        )
        return [state_from_row(row) for row in rows]

    def write_state(self, record: StateRecord) -> None:
        self.client.create_dataset(
            f"{self.conn.project}.{self.dataset}",
            exists_ok=True,
            retry=self.retry,
            timeout=self.conn.timeout,
        )
        params: dict[str, str | None] = {}
        statements = _state_sql(self._ensure(None, STATE_DDL), record, 0, params)
        script = ";\n".join(["BEGIN TRANSACTION", *statements, "COMMIT TRANSACTION"])
        self._query(script + ";", params)

    def delete_states(self, prefix: str) -> int:
        if self._find_table(f"{self.conn.project}.{self.dataset}.{STATE_TABLE}") is None:
            return 0
        state = self._target(STATE_TABLE)
        where = "WHERE STARTS_WITH(state_key, @prefix)"
        ((count,),) = self._query(f"SELECT count(*) FROM {state} {where}", {"prefix": prefix})
        self._query(f"DELETE FROM {state} {where}", {"prefix": prefix})
        return int(count)

    def cursor_max(self, column: str) -> Any:
        """MAX(column); when the table is partitioned by that column, only its newest
        partition is scanned."""
        table = self._find_table(self.table_id)
        if table is None or column not in {f.name for f in table.schema}:
            return None
        ((top,),) = self._query(
            f"SELECT MAX({quote_backtick(column)}) FROM {self._target()}"
            + self._newest_partition(table, column)
        )
        return top

    def _newest_partition(self, table: Any, column: str) -> str:
        """`` WHERE column >= <start of the newest partition>``, or '' when the table is
        not partitioned by ``column`` or BigQuery does not say."""
        partitioning = table.time_partitioning
        if partitioning is None or partitioning.field != column:
            return ""
        rows = self._query(
            "SELECT MAX(partition_id) FROM "
            + quote_backtick(f"{self.conn.project}.{self.dataset}.INFORMATION_SCHEMA.PARTITIONS")
            + " WHERE table_name = @table AND total_rows > 0 "
            "AND partition_id NOT IN ('__NULL__', '__UNPARTITIONED__')",
            {"table": self.table},
        )
        newest = rows[0][0] if rows else None
        if not newest or not str(newest).isdigit():
            return ""
        start = dt.datetime.strptime(str(newest), "%Y%m%d%H"[: len(str(newest)) - 2])
        kind = {f.name: f.field_type for f in table.schema}[column]
        log.debug("MAX(%s) of %s read from partition %s on", column, self.name, newest)
        return f" WHERE {quote_backtick(column)} >= {_literal(start, kind)}"

    def rows_at_max(self, column: str, columns: list[str]) -> pa.Table | None:
        table = self._find_table(self.table_id)
        if table is None or not {column, *columns} <= {f.name for f in table.schema}:
            return None
        c = quote_backtick(column)
        select = ", ".join(quote_backtick(n) for n in columns)
        job = self.client.query(
            f"SELECT {select} FROM {self._target()} "
            f"WHERE {c} = (SELECT MAX({c}) FROM {self._target()})",
            retry=self.retry,
            timeout=self.conn.timeout,
        )
        rows: pa.Table = job.to_arrow(create_bqstorage_client=False)
        return rows


#: the destination's companion tables (``{table}`` is the quoted name)
STATE_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (state_key STRING NOT NULL, `cursor` STRING, "
    "watermark STRING, boundary STRING, run_id STRING, updated_at STRING)"
)
QUARANTINE_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (run_id STRING NOT NULL, quarantined_at TIMESTAMP "
    "NOT NULL, stream STRING NOT NULL, reason_code STRING NOT NULL, reason STRING NOT NULL, "
    "record STRING NOT NULL)"
)


def _state_sql(table: str, record: StateRecord, i: int, params: dict[str, str | None]) -> list[str]:
    """Statements that put one state record (its values as parameters ``@s<i>_<n>``)."""
    values = state_params(record)
    names = [f"s{i}_{n}" for n in range(len(values))]
    params.update(zip(names, values, strict=True))
    return [
        f"DELETE FROM {table} WHERE state_key = @{names[0]}",
        f"INSERT INTO {table} ({STATE_COLUMNS.replace('cursor', '`cursor`')}) "
        f"VALUES ({', '.join('@' + n for n in names)})",
    ]


def _literal(value: Any, field_type: str) -> str:
    """A DATE, DATETIME or TIMESTAMP literal of ``value`` for a column of that type."""
    if field_type == "DATE":
        day = value.date() if isinstance(value, dt.datetime) else value
        return f"DATE '{day.isoformat()}'"
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if field_type == "TIMESTAMP":
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return f"TIMESTAMP '{aware.isoformat()}'"
    return f"DATETIME '{value.replace(tzinfo=None).isoformat()}'"


def _widened(have: LogicalType, incoming: LogicalType) -> str | None:
    """None when a column of type ``have`` holds ``incoming`` as it is; else the type to
    widen it to, or '' when BigQuery cannot widen it so."""
    current, wanted = bigquery_type(have), bigquery_type(incoming)
    if current == wanted:
        return None
    numeric = ("decimal",)
    if have.kind in numeric and incoming.kind in numeric:
        h_scale, i_scale = have.scale or 0, incoming.scale or 0
        if have.precision is None or incoming.precision is None:
            return None if have.precision is None else ""
        digits = max(have.precision - h_scale, incoming.precision - i_scale)
        scale = max(h_scale, i_scale)
        both = bigquery_type(LogicalType("decimal", precision=digits + scale, scale=scale))
        return None if both == current else both
    base, wanted_base = current.split("(")[0], wanted.split("(")[0]
    return wanted_base if wanted_base in _WIDER.get(base, ()) else ""


#: BigQuery type -> the types ALTER COLUMN SET DATA TYPE can widen it to
_WIDER = {"INT64": ("NUMERIC", "BIGNUMERIC", "FLOAT64"), "NUMERIC": ("BIGNUMERIC", "FLOAT64")}


_INVALID = re.compile(r"[^A-Za-z0-9_]")
#: prefixes BigQuery reserves for its own columns
_RESERVED = ("_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLON_")
MAX_NAME = 300


def bigquery_names(names: list[str]) -> dict[str, str]:
    """Each name as a valid, unique BigQuery column name.

    Characters other than ASCII letters, digits and underscores become underscores; a
    name starting with a digit, or with a prefix BigQuery reserves, gets a leading
    ``c_``; names are cut to 300 characters; names equal regardless of case (BigQuery
    compares them so) get ``_2``, ``_3``, ... in order. Valid names stay as they are.
    """
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        new = _INVALID.sub("_", name) or "_"
        if new[0].isdigit() or new.upper().startswith(_RESERVED):
            new = f"c_{new}"
        base = new = new[:MAX_NAME]
        suffix = 1
        while new.lower() in taken:
            suffix += 1
            new = f"{base[: MAX_NAME - len(str(suffix)) - 1]}_{suffix}"
        taken.add(new.lower())
        out[name] = new
    return out


def _renamed(
    batches: pa.RecordBatchReader, renamed: dict[str, str], nested: dict[str, str]
) -> pa.RecordBatchReader:
    """The batches with BigQuery's names: columns renamed, and nested fields by a
    zero-copy view of each column as its type with valid field names."""
    import pyarrow as pa

    if not renamed and not nested:
        return batches
    fields = [
        pa.field(renamed.get(f.name, f.name), _valid_arrow(f.type), f.nullable)
        for f in batches.schema
    ]
    schema = pa.schema(fields)
    return pa.RecordBatchReader.from_batches(
        schema,
        (
            pa.RecordBatch.from_arrays(
                [c.view(f.type) if nested else c for c, f in zip(b.columns, fields, strict=True)],
                schema=schema,
            )
            for b in batches
        ),
    )


def _valid_fields(logical: LogicalType, path: str, renamed: dict[str, str]) -> LogicalType:
    """``logical`` with every struct field name valid for BigQuery; the renamings go into
    ``renamed`` by path (``address.zip code`` -> ``address.zip_code``)."""
    if logical.kind == "list" and logical.item is not None:
        return replace(logical, item=_valid_fields(logical.item, f"{path}[]", renamed))
    if logical.kind != "struct":
        return logical
    names = bigquery_names([c.name for c in logical.fields])
    fields = []
    for c in logical.fields:
        if names[c.name] != c.name:
            renamed[f"{path}.{c.name}"] = f"{path}.{names[c.name]}"
        fields.append(
            replace(c, name=names[c.name], type=_valid_fields(c.type, f"{path}.{c.name}", renamed))
        )
    return replace(logical, fields=tuple(fields))


def _valid_arrow(dtype: pa.DataType) -> pa.DataType:
    """An Arrow type with the struct field names ``_valid_fields`` gives."""
    import pyarrow as pa

    if pa.types.is_list(dtype):
        return pa.list_(dtype.value_field.with_type(_valid_arrow(dtype.value_type)))
    if pa.types.is_struct(dtype):
        names = bigquery_names([f.name for f in dtype])
        return pa.struct(
            [f.with_name(names[f.name]).with_type(_valid_arrow(f.type)) for f in dtype]
        )
    return dtype


@dataclass
class Written:
    rows: int
    """Rows written to the file."""
    rejected: list[tuple[pa.Table, pa.Array[Any]]] = field(default_factory=list)
    """Rows left out, with a reason each (see ``bigquery_values``)."""


def _write_parquet(batches: pa.RecordBatchReader, path: Path, *, sequence: bool) -> Written:
    """The batches as one Parquet file in BigQuery's load types, without the rows BigQuery
    cannot hold; with ``sequence``, a column numbering the rows in arrival order."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    logical = TableSchema.from_arrow(batches.schema)
    fields = [pa.field(c.name, _load_type(c.type), c.nullable) for c in logical.columns]
    if sequence:
        fields.append(pa.field(SEQUENCE, pa.int64(), False))
    schema = pa.schema(fields)
    written = Written(0)
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for batch in batches:
            held, reasons = bigquery_values(batch, logical)
            if reasons is not None:
                bad = pc.is_valid(reasons)
                written.rejected.append(
                    (pa.Table.from_batches([batch.filter(bad)]), reasons.filter(bad))
                )
                held = held.filter(pc.invert(bad))
            arrays = held.cast(pa.schema(fields[: len(logical.columns)])).columns
            if sequence:
                rows = written.rows
                arrays = [*arrays, pa.array(range(rows, rows + held.num_rows), pa.int64())]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            written.rows += held.num_rows
    return written


def _load_type(logical: LogicalType) -> pa.DataType:
    """The Arrow type a column is loaded as: its Parquet type, except that a decimal of
    undeclared precision (exact text) becomes a BIGNUMERIC."""
    if logical.kind == "decimal" and logical.precision is None:
        return _bignumeric_type()
    return parquet_type(logical)


def _bignumeric_type() -> pa.DataType:
    import pyarrow as pa

    return pa.decimal256(76, 38)


#: the days (since 1970-01-01) and seconds of 0001-01-01 and of the end of 9999-12-31
_DAYS = (-719_162, 2_932_896)
_SECONDS = (-62_135_596_800, 253_402_300_800)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000}


def bigquery_values(
    batch: pa.RecordBatch, schema: TableSchema
) -> tuple[pa.RecordBatch, pa.Array[Any] | None]:
    """The batch as BigQuery can hold it, and a reason for each row it cannot (None
    when every row fits). The rules, applied to whole columns:

    - DATE, DATETIME and TIMESTAMP hold the years 1 to 9999: a value outside is a reason.
    - A decimal of undeclared precision becomes a BIGNUMERIC: digits after the 38th
      decimal place are rounded half away from zero; a value with more than 38 digits
      before the point, NaN or Infinity is a reason.
    - An ARRAY cannot hold a NULL element: a list with one is a reason. (A NULL list
      loads as an empty ARRAY: BigQuery has no NULL arrays.)
    - FLOAT64 holds NaN and +/-Infinity as they are.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = list(batch.columns)
    reasons: list[pa.Array[Any]] = []
    for i, column in enumerate(schema.columns):
        array = columns[i]
        bad = _outside_years(array)
        if bad is not None:
            why = "is outside the years 1 to 9999 that BigQuery holds"
            reasons.append(_reason(bad, column.name, array, why))
        bad = _null_elements(array)
        if bad is not None:
            why = "the list has a NULL element, which a BigQuery ARRAY cannot hold"
            reasons.append(_reason(bad, column.name, None, why))
        if column.type.kind == "decimal" and column.type.precision is None:
            columns[i], reason = _bignumeric(array, column.name)
            if reason is not None:
                reasons.append(reason)
    held = (
        pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
        if columns != list(batch.columns)
        else batch
    )
    if not reasons:
        return held, None
    return held, reasons[0] if len(reasons) == 1 else pc.coalesce(*reasons)


def _outside_years(array: pa.Array[Any]) -> pa.Array[Any] | None:
    """Where a date or timestamp array lies outside the years 1 to 9999, or None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers: Any
    if pa.types.is_date32(array.type):
        numbers, (low, high) = array.view(pa.int32()), _DAYS
    elif pa.types.is_timestamp(array.type) and array.type.unit in _PER_SECOND:
        per = _PER_SECOND[array.type.unit]
        numbers, low, high = array.view(pa.int64()), _SECONDS[0] * per, _SECONDS[1] * per - 1
    else:
        return None
    outside = pc.or_(pc.less(numbers, pa.scalar(low)), pc.greater(numbers, pa.scalar(high)))
    bad: Any = pc.fill_null(outside, pa.scalar(False))
    return bad if pc.any(bad).as_py() else None


def _null_elements(array: pa.Array[Any]) -> pa.Array[Any] | None:
    """Where a list array holds a NULL element, or None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_list(array.type) or array.null_count == len(array):
        return None
    items: Any = pc.list_flatten(array)
    if not items.null_count:
        return None
    parents = pc.filter(pc.list_parent_indices(array), items.is_null())
    bad: pa.Array[Any] = pc.is_in(pa.array(range(len(array)), pa.int64()), value_set=parents)
    return bad


def _reason(bad: pa.Array[Any], name: str, shown: pa.Array[Any] | None, why: str) -> pa.Array[Any]:
    """``name: <value> <why>`` (or ``name: <why>``) where ``bad``, else null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text: Any = pa.scalar(f"{name}: {why}")
    if shown is not None:
        values: Any = shown.cast(pa.string())
        text = pc.binary_join_element_wise(f"{name}: ", values, f" {why}", "")
    reason: pa.Array[Any] = pc.if_else(bad, text, pa.scalar(None, pa.string()))
    return reason


def _bignumeric(array: pa.Array[Any], name: str) -> tuple[pa.Array[Any], pa.Array[Any] | None]:
    """Decimal text as BIGNUMERIC, and the reasons of the values it cannot hold (see
    ``bigquery_values``). One cast for the whole column; value by value only when that
    cast fails."""
    import decimal

    import pyarrow as pa

    try:
        return array.cast(_bignumeric_type()), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[decimal.Decimal | None] = []
    reasons: list[str | None] = []
    step, limit = decimal.Decimal(1).scaleb(-38), decimal.Decimal(10) ** 38
    with decimal.localcontext() as context:
        context.prec = 400
        for text in array.to_pylist():
            value, why = None, None
            if text is not None:
                try:
                    exact = decimal.Decimal(text)
                except decimal.InvalidOperation:
                    exact = decimal.Decimal("NaN")
                if not exact.is_finite():
                    why = "is not a finite number, which BIGNUMERIC cannot hold"
                else:
                    value = exact.quantize(step, rounding=decimal.ROUND_HALF_UP)
                    if abs(value) >= limit:
                        value, why = (
                            None,
                            "has more than the 38 digits before the point that BIGNUMERIC holds",
                        )
            values.append(value)
            reasons.append(None if why is None else f"{name}: {text} {why}")
    found = [r for r in reasons if r is not None]
    return pa.array(values, _bignumeric_type()), pa.array(reasons, pa.string()) if found else None


# --------------------------------------------------------------------------- factories


def open_source(
    conn: BigQueryConnection,
    spec: SourceSpec,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> BigQuerySource:
    return BigQuerySource(conn, spec, resources, parallelism, batch_size)


def open_destination(
    conn: BigQueryConnection, spec: DestinationSpec, resources: RunResources
) -> BigQueryDestination:
    return BigQueryDestination(conn, spec, resources)


def query(
    conn: BigQueryConnection, resources: RunResources, sql: str, timeout: float | None = None
) -> pa.Table:
    """Run one query job (quality checks, metrics) and return its rows, read over REST.
    Tables named without a dataset are in the connection's dataset; past ``timeout``
    seconds BigQuery stops the job."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(default_dataset=f"{conn.project}.{conn.dataset}")
    if timeout:
        config.job_timeout_ms = int(timeout * 1000)
    job = client(conn, resources).query(
        sql, job_config=config, retry=_retry(conn), timeout=conn.timeout
    )
    table: pa.Table = job.to_arrow(create_bqstorage_client=False)
    return table


def execute(conn: BigQueryConnection, resources: RunResources, sql: str) -> None:
    """Run one statement that changes data (quarantine purge and replay)."""
    job = client(conn, resources).query(sql, retry=_retry(conn), timeout=conn.timeout)
    job.result(retry=_retry(conn), timeout=conn.timeout)
