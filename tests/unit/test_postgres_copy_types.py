"""Which Arrow columns COPY straight into a PostgreSQL column (no server needed)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.connectors.postgres import PgColumn
from deltaflow.connectors.postgres.ingest import copies_into as _copies_into
from deltaflow.connectors.postgres.ingest import jsonb_binary as _jsonb_binary
from deltaflow.schema.types import LogicalType


def column(pg_type: str) -> PgColumn:
    return PgColumn("c", LogicalType("string"), True, pg_type, None)


@pytest.mark.parametrize(
    ("dtype", "pg_type", "direct"),
    [
        (pa.int64(), "bigint", True),
        (pa.int32(), "bigint", False),  # binary COPY does not widen: staged and cast
        (pa.string(), "jsonb", True),
        (pa.string(), "uuid", False),
        (pa.string(), "character varying(20)", False),  # a cast, not an error, decides length
        (pa.decimal128(12, 2), "numeric(12,2)", True),
        (pa.timestamp("us", tz="UTC"), "timestamp with time zone", True),
        (pa.timestamp("us"), "timestamp with time zone", False),
        (pa.list_(pa.string()), "text[]", True),
        (pa.list_(pa.string()), "jsonb", False),  # lists held as JSON are staged
        (pa.list_(pa.int64()), "integer[]", False),
    ],
)
def test_copies_into(dtype: pa.DataType, pg_type: str, direct: bool) -> None:
    assert _copies_into(dtype, column(pg_type)) is direct


def test_jsonb_binary_prefixes_the_version_byte_and_keeps_nulls() -> None:
    batch = pa.record_batch({"j": ['{"a": 1}', None], "n": [1, 2]})
    reader = pa.RecordBatchReader.from_batches(batch.schema, [batch])

    (out,) = list(_jsonb_binary(reader, ["j"]))

    assert out.column("j").to_pylist() == [b'\x01{"a": 1}', None]
    assert out.column("n").to_pylist() == [1, 2]


def test_a_scanner_error_never_shows_the_password(tmp_path: object) -> None:
    # DuckDB's PostgreSQL scanner puts the whole connection URI in its errors.
    from pathlib import Path

    from deltaflow.config.connections import PostgresConnection
    from deltaflow.config.sources import SplitSqlSource
    from deltaflow.connectors.postgres import PostgresSource, scanner_extension
    from deltaflow.connectors.protocol import RunResources, Split
    from deltaflow.errors import SourceError

    assert scanner_extension() is not None  # the postgres extra installs it
    conn = PostgresConnection.model_validate(
        {"type": "postgres", "host": "127.0.0.1", "port": 1, "user": "u", "password": "pw-7Qx9"}
    )
    source = PostgresSource(
        conn,
        SplitSqlSource(connection="pg", table="t"),
        1000,
        1,
        RunResources(Path(str(tmp_path)), "r"),
    )
    source.columns = [PgColumn("id", LogicalType("int64"), False, "bigint", None)]
    assert source.reader == "duckdb"
    with pytest.raises(SourceError) as caught:
        list(source.read(Split(0)))
    assert "Unable to connect to Postgres" in str(caught.value)
    assert "pw-7Qx9" not in str(caught.value)
    assert caught.value.__suppress_context__  # DuckDB's own error is never printed
