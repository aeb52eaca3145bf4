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

import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.base import (
    LoadResult,
    RunResources,
    Split,
    StateRecord,
    check_merge_keys,
    conform_batch,
    relay_failures,
    split_table,
)
from deltaflow.errors import ConnectionFailedError, LoadError, SchemaError, SourceError
from deltaflow.schema.mappings import (
    bigquery_logical,
    bigquery_type,
    parquet_type,
    quote_backtick,
)
from deltaflow.schema.types import Column, TableSchema

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
        elif conn.credentials == "anonymous":
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
    read session's streams is a split, so ``parallelism`` streams are read at once."""

    def __init__(
        self,
        conn: BigQueryConnection,
        spec: SourceSpec,
        resources: RunResources,
        parallelism: int,
    ):
        self.conn = conn
        self.spec = spec
        self.resources = resources
        self.parallelism = max(1, parallelism)
        self.name = spec.stream or (
            split_table(spec.table, conn.dataset)[1] if spec.table else "query"
        )
        self.table_path = ""  # projects/P/datasets/D/tables/T of what is read
        self.schema: TableSchema | None = None
        self.session: Any = None

    def discover(self) -> TableSchema:
        bq = client(self.conn, self.resources)
        retry = _retry(self.conn)
        if self.spec.query:
            job = bq.query(self.spec.query, retry=retry, timeout=self.conn.timeout)
            job.result(retry=retry, timeout=self.conn.timeout)
            table_ref = job.destination
            table = bq.get_table(table_ref, retry=retry, timeout=self.conn.timeout)
        else:
            assert self.spec.table is not None
            dataset, name = split_table(self.spec.table, self.conn.dataset)
            table = bq.get_table(
                f"{self.conn.project}.{dataset}.{name}", retry=retry, timeout=self.conn.timeout
            )
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
        from google.cloud.bigquery_storage_v1 import types

        assert self.schema is not None, "discover() first"
        options = types.ReadSession.TableReadOptions(selected_fields=self.schema.names)
        if self.spec.where:
            options.row_restriction = self.spec.where
        self.session = read_client(self.conn, self.resources).create_read_session(
            parent=f"projects/{self.conn.project}",
            read_session=types.ReadSession(
                table=self.table_path, data_format=types.DataFormat.ARROW, read_options=options
            ),
            max_stream_count=self.parallelism,
            timeout=self.conn.timeout,
        )
        streams = [s.name for s in self.session.streams]
        return [Split(i, {"stream": name}) for i, name in enumerate(streams)] or [Split(0)]

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        assert self.schema is not None
        assert self.session is not None
        stream = split.params.get("stream")
        if stream is None:  # an empty table: BigQuery gives it no stream
            return
        target = self.schema.to_arrow()
        arrow_schema = pa.ipc.read_schema(pa.py_buffer(self.session.arrow_schema.serialized_schema))
        reader = read_client(self.conn, self.resources)
        try:
            for response in reader.read_rows(stream, timeout=self.conn.timeout):
                message = response.arrow_record_batch.serialized_record_batch
                batch = pa.ipc.read_record_batch(pa.py_buffer(message), arrow_schema)
                yield conform_batch(batch.select(self.schema.names), target)
        except Exception as exc:
            if isinstance(exc, SourceError):
                raise
            raise SourceError(
                f"reading BigQuery stream '{self.name}' failed: {exc}",
                hint="check the table, the where filter and the connection",
            ) from exc


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
        self.jobs: dict[str, int] = {}

    @property
    def client(self) -> Any:
        return client(self.conn, self.resources)

    @property
    def retry(self) -> Any:
        return _retry(self.conn)

    def _get_table(self, table_id: str) -> Any:
        return self.client.get_table(table_id, retry=self.retry, timeout=self.conn.timeout)

    def _target(self, table: str | None = None) -> str:
        return quote_backtick(f"{self.conn.project}.{self.dataset}.{table or self.table}")

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one query job; its bytes processed and billed go into the run's details."""
        job = self.client.query(sql, retry=self.retry, timeout=self.conn.timeout)
        rows = [tuple(r) for r in job.result(retry=self.retry, timeout=self.conn.timeout)]
        self._count("query_jobs", 1)
        self._count("bytes_processed", job.total_bytes_processed or 0)
        self._count("bytes_billed", job.total_bytes_billed or 0)
        return rows

    def _count(self, key: str, value: int) -> None:
        self.jobs[key] = self.jobs.get(key, 0) + int(value)

    # ------------------------------------------------------------------ prepare

    def prepare(self, schema: TableSchema) -> None:
        """Create the dataset and the table, or add the schema's new columns to it.

        Column names BigQuery does not accept are made valid first (see
        ``bigquery_names``); each renaming is logged and recorded in the run's details.
        """
        from google.api_core.exceptions import NotFound

        self.renamed = {old: new for old, new in bigquery_names(schema.names).items() if old != new}
        for old, new in self.renamed.items():
            log.warning("column %r is written to BigQuery %s as %r", old, self.name, new)
        schema = TableSchema(
            tuple(replace(c, name=self._column(c.name)) for c in schema.columns),
            tuple(self._column(k) for k in schema.primary_key),
        )

        self.client.create_dataset(
            f"{self.conn.project}.{self.dataset}",
            exists_ok=True,
            retry=self.retry,
            timeout=self.conn.timeout,
        )
        try:
            existing = self._get_table(self.table_id)
        except NotFound:
            self._query(self._create_sql(schema))
            existing = self._get_table(self.table_id)
        else:
            have = {f.name.lower() for f in existing.schema}
            for column in schema.columns:
                if column.name.lower() not in have:
                    self._query(
                        f"ALTER TABLE {self._target()} ADD COLUMN "
                        f"{quote_backtick(column.name)} {bigquery_type(column.type)}"
                    )
            existing = self._get_table(self.table_id)
        self.columns = {f.name: f.field_type for f in existing.schema}

    def _column(self, name: str) -> str:
        """The BigQuery name of a source column (config may use either name)."""
        return self.renamed.get(name, name)

    def _create_sql(self, schema: TableSchema) -> str:
        keys = {self._column(k) for k in self.spec.primary_key} or set(schema.primary_key)
        columns = ", ".join(
            f"{quote_backtick(c.name)} {bigquery_type(c.type)}"
            + (" NOT NULL" if c.name in keys and c.type.kind not in ("list",) else "")
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
    ) -> LoadResult:
        upstream: list[BaseException] = []
        relayed = _renamed(relay_failures(batches, upstream), self.renamed)
        primary_key = tuple(self._column(k) for k in primary_key)
        with tempfile.TemporaryDirectory(prefix="deltaflow-bq-") as work:
            path = Path(work) / "batch.parquet"
            try:
                rows = _write_parquet(relayed, path, sequence=write_mode == "merge")
                if write_mode == "merge":
                    self._merge(path, primary_key, relayed.schema.names)
                else:
                    self._load_job(path, self.table, write_mode)
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
        if self.renamed:
            details["renamed_columns"] = dict(self.renamed)
        return LoadResult(rows, int(table.num_rows or 0), details)

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

    def _merge(self, path: Path, primary_key: tuple[str, ...], names: list[str]) -> None:
        staging = f"{STAGING_PREFIX}{self.table}_{uuid.uuid4().hex[:12]}"
        staged = self._target(staging)
        self._load_job(path, staging, "replace")
        try:
            check_merge_keys(
                self.name,
                primary_key,
                lambda where: int(
                    self._query(
                        f"SELECT count(*) FROM {staged} WHERE {where.replace(chr(34), '`')}"
                    )[0][0]
                ),
            )
            keys = ", ".join(quote_backtick(k) for k in primary_key)
            latest = (
                f"SELECT * EXCEPT ({quote_backtick(SEQUENCE)}) FROM {staged} "
                f"WHERE TRUE QUALIFY ROW_NUMBER() OVER "
                f"(PARTITION BY {keys} ORDER BY {quote_backtick(SEQUENCE)} DESC) = 1"
            )
            match = " AND ".join(
                f"t.{quote_backtick(k)} = s.{quote_backtick(k)}" for k in primary_key
            )
            columns = ", ".join(quote_backtick(n) for n in names)
            updates = ", ".join(
                f"{quote_backtick(n)} = s.{quote_backtick(n)}"
                for n in names
                if n not in primary_key
            )
            when_matched = f"WHEN MATCHED THEN UPDATE SET {updates} " if updates else ""
            self._query(
                f"MERGE {self._target()} AS t USING ({latest}) AS s ON {match} "
                f"{when_matched}WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({columns})"
            )
        finally:
            self.client.delete_table(
                f"{self.conn.project}.{self.dataset}.{staging}",
                not_found_ok=True,
                retry=self.retry,
                timeout=self.conn.timeout,
            )


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


def _renamed(batches: pa.RecordBatchReader, renamed: dict[str, str]) -> pa.RecordBatchReader:
    import pyarrow as pa

    if not renamed:
        return batches
    names = [renamed.get(n, n) for n in batches.schema.names]
    schema = pa.schema([f.with_name(n) for f, n in zip(batches.schema, names, strict=True)])
    return pa.RecordBatchReader.from_batches(
        schema, (pa.RecordBatch.from_arrays(b.columns, schema=schema) for b in batches)
    )


def _write_parquet(batches: pa.RecordBatchReader, path: Path, *, sequence: bool) -> int:
    """The batches as one Parquet file in BigQuery's load types; with ``sequence``, a
    column numbering the rows in arrival order. Returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    logical = TableSchema.from_arrow(batches.schema)
    fields = [pa.field(c.name, parquet_type(c.type), c.nullable) for c in logical.columns]
    if sequence:
        fields.append(pa.field(SEQUENCE, pa.int64(), False))
    schema = pa.schema(fields)
    rows = 0
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for batch in batches:
            arrays = batch.cast(pa.schema(fields[: len(logical.columns)])).columns
            if sequence:
                arrays = [*arrays, pa.array(range(rows, rows + batch.num_rows), pa.int64())]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += batch.num_rows
    return rows


# --------------------------------------------------------------------------- factories


def open_source(
    conn: BigQueryConnection,
    spec: SourceSpec,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> BigQuerySource:
    return BigQuerySource(conn, spec, resources, parallelism)


def open_destination(
    conn: BigQueryConnection, spec: DestinationSpec, resources: RunResources
) -> BigQueryDestination:
    return BigQueryDestination(conn, spec, resources)
