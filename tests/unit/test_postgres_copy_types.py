"""Which Arrow columns COPY straight into a PostgreSQL column (no server needed)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.connectors.postgres import PgColumn, _copies_into, _jsonb_binary
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
