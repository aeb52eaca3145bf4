"""The BigQuery emulator answers the calls the BigQuery connector is built on, through the
official client libraries: partitioned and clustered tables, Parquet load jobs, queries
with parameters, and Arrow reads over the Storage Read API."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.bigquery import BigQueryEmulator

ROWS = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "amount": pa.array([Decimal("1.10"), None, Decimal("-3.25")], pa.decimal128(12, 2)),
        "created_at": pa.array(
            [dt.datetime(2024, 1, d, 12, 0, 0, 123456, tzinfo=dt.UTC) for d in (1, 1, 2)],
            pa.timestamp("us", tz="UTC"),
        ),
        "tags": pa.array([["a"], [], ["b", "c"]], pa.list_(pa.string())),
    }
)


def test_partitioned_table_loads_parquet_and_reads_back_as_arrow(
    bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    from google.cloud import bigquery
    from google.cloud.bigquery_storage_v1 import types

    client = bigquery_emulator.client()
    table_id = f"{bigquery_emulator.project}.{bq_dataset}.events"
    table = bigquery.Table(
        table_id,
        schema=[
            bigquery.SchemaField("id", "INT64", mode="REQUIRED"),
            bigquery.SchemaField("amount", "NUMERIC"),
            bigquery.SchemaField("created_at", "TIMESTAMP"),
            bigquery.SchemaField("tags", "STRING", mode="REPEATED"),
        ],
    )
    table.time_partitioning = bigquery.TimePartitioning(field="created_at")
    table.clustering_fields = ["id"]
    client.create_table(table, timeout=30)

    buffer = io.BytesIO()
    pq.write_table(ROWS, buffer)
    buffer.seek(0)
    job = client.load_table_from_file(
        buffer,
        table_id,
        job_config=bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            parquet_options=_list_inference(),
        ),
        timeout=30,
    )
    job.result(timeout=60)

    stored = client.get_table(table_id, timeout=30)
    assert stored.time_partitioning.field == "created_at"
    assert stored.clustering_fields == ["id"]
    query = client.query(
        f"SELECT count(*) AS n, max(created_at) AS top FROM `{table_id}` WHERE id >= @low",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("low", "INT64", 2)]
        ),
        timeout=30,
    )
    ((n, top),) = [tuple(r) for r in query.result(timeout=60)]
    assert (n, top) == (2, dt.datetime(2024, 1, 2, 12, 0, 0, 123456, tzinfo=dt.UTC))

    reader = bigquery_emulator.read_client()
    session = reader.create_read_session(
        parent=f"projects/{bigquery_emulator.project}",
        read_session=types.ReadSession(
            table=f"projects/{bigquery_emulator.project}/datasets/{bq_dataset}/tables/events",
            data_format=types.DataFormat.ARROW,
        ),
        max_stream_count=2,
        timeout=30,
    )
    schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
    batches = [
        pa.ipc.read_record_batch(
            pa.py_buffer(response.arrow_record_batch.serialized_record_batch), schema
        )
        for stream in session.streams
        for response in reader.read_rows(stream.name, timeout=30)
    ]
    back = pa.Table.from_batches(batches).sort_by("id")
    assert back.column("id").to_pylist() == [1, 2, 3]
    assert back.column("amount").to_pylist() == [Decimal("1.10"), None, Decimal("-3.25")]
    assert back.column("tags").to_pylist() == [["a"], [], ["b", "c"]]


def _list_inference() -> object:
    from google.cloud.bigquery.format_options import ParquetOptions

    options = ParquetOptions()
    options.enable_list_inference = True
    return options


def test_every_mapped_column_type_creates_a_table(
    bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    from deltaflow.schema.mappings import bigquery_type, quote_backtick
    from tests.unit.test_bigquery_types import BIGQUERY_GOLDEN

    # names are made valid for BigQuery before tables are created: skip the quoting case
    golden = [(logical, t) for logical, t in BIGQUERY_GOLDEN if "\\`" not in t]
    columns = ", ".join(
        f"{quote_backtick(f'c{i}')} {bigquery_type(logical)}"
        for i, (logical, _) in enumerate(golden)
    )
    client = bigquery_emulator.client()
    table_id = f"{bigquery_emulator.project}.{bq_dataset}.every_type"
    client.query(f"CREATE TABLE `{table_id}` ({columns})", timeout=30).result(timeout=60)

    fields = {f.name: f for f in client.get_table(table_id, timeout=30).schema}
    assert len(fields) == len(golden) == len(BIGQUERY_GOLDEN) - 1
    stored = {
        logical_and_type[1]: (fields[f"c{i}"].field_type, fields[f"c{i}"].mode)
        for i, logical_and_type in enumerate(golden)
    }
    # the API reports legacy names (INTEGER, FLOAT, BOOLEAN, RECORD); the emulator stores
    # BIGNUMERIC(30, 0) as NUMERIC, which BigQuery itself keeps as BIGNUMERIC
    assert stored["BIGNUMERIC(30, 0)"] in (("BIGNUMERIC", "NULLABLE"), ("NUMERIC", "NULLABLE"))
    assert stored["NUMERIC(12, 2)"] == ("NUMERIC", "NULLABLE")
    assert (fields["c12"].precision, fields["c12"].scale) == (12, 2)
    assert stored["BIGNUMERIC(76, 38)"] == ("BIGNUMERIC", "NULLABLE")
    assert stored["BIGNUMERIC"] == ("BIGNUMERIC", "NULLABLE")
    assert stored["DATETIME"] == ("DATETIME", "NULLABLE")
    assert stored["TIMESTAMP"] == ("TIMESTAMP", "NULLABLE")
    assert stored["INTERVAL"] == ("INTERVAL", "NULLABLE")
    assert stored["JSON"] == ("JSON", "NULLABLE")
    assert stored["ARRAY<INT64>"] == ("INTEGER", "REPEATED")
    assert stored["ARRAY<STRUCT<`sku` STRING, `price` NUMERIC(12, 2)>>"] == ("RECORD", "REPEATED")
