"""A BigQuery destination: tables created from the logical schema
(``deltaflow.schema.mappings.BIGQUERY_TYPES``) with their partitioning and clustering,
and loads through a Parquet file and a load job (never streaming inserts).

``append`` and ``replace`` load straight into the table (a load job is atomic:
WRITE_APPEND or WRITE_TRUNCATE, which keeps partitioning and clustering); ``merge``, state
to commit or rows to quarantine load a staging table next to the target and apply it in
one transaction, the last row of a repeated key winning.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.connectors._common import check_merge_keys, relay_failures
from deltaflow.connectors.bigquery.evolution import SchemaEvolution
from deltaflow.connectors.bigquery.state import IncrementalState
from deltaflow.connectors.bigquery.types import (
    _literal,
    _load_type,
    _renamed,
    _valid_fields,
    bigquery_names,
    bigquery_values,
)
from deltaflow.connectors.protocol import LoadResult, StateRecord
from deltaflow.errors import LoadError, SchemaError
from deltaflow.faults import crash_point
from deltaflow.schema.mappings import bigquery_type, quote_backtick
from deltaflow.schema.types import TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import WriteMode
    from deltaflow.config.models import PartitionSpec

log = logging.getLogger("deltaflow.bigquery")

STAGING_PREFIX = "__deltaflow_"
#: the staged row's position, so a merge keeps the last row of a repeated key
SEQUENCE = "__deltaflow_seq"


class BigQueryDestination(IncrementalState, SchemaEvolution):
    """Creates, evolves and loads one BigQuery table (its state and evolution parts
    are in ``state`` and ``evolution``, over the shared ``StateTable`` and
    ``plan_changes``)."""

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
        details: dict[str, Any] = dict(self.jobs) | (self.merged if write_mode == "merge" else {})
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
            with self._session(write=True) as script:
                for statement in self._apply_sql(write_mode, staging, primary_key, names):
                    script.add(statement)
                if rejected is not None:
                    held = self._ensure(quarantine.SUFFIX, QUARANTINE_DDL)
                    staged.append(f"{staging}_q")
                    pq.write_table(rejected, path)
                    self._load_job(path, staged[-1], "replace")
                    script.add(f"INSERT INTO {held} SELECT * FROM {self._target(staged[-1])}")
                self._put_states(script, state() if state else [])
                crash_point("after_load_before_commit")
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
        self.merged = self._merge_counts(target, staged, keys)
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

    def _merge_counts(self, target: str, staged: str, keys: str) -> dict[str, int]:
        """The keys a merge will insert and update, counted before it is applied: keys,
        not rows (the table may repeat a key, the batch too)."""
        ((count, matched),) = self._query(
            f"SELECT COUNT(*), COUNT(m._found) FROM (SELECT DISTINCT {keys} FROM {staged}) "
            f"LEFT JOIN (SELECT DISTINCT {keys}, TRUE AS _found FROM {target}) AS m "
            f"USING ({keys})"
        )
        return {"inserted": int(count) - int(matched), "updated": int(matched)}

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


#: the quarantine table, next to the destination (``{table}`` is the quoted name)
QUARANTINE_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (run_id STRING NOT NULL, quarantined_at TIMESTAMP "
    "NOT NULL, stream STRING NOT NULL, reason_code STRING NOT NULL, reason STRING NOT NULL, "
    "record STRING NOT NULL)"
)


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
