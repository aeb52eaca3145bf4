"""What ADBC's bulk ingest (binary COPY) writes: which Arrow columns COPY straight into
a PostgreSQL column, and the batches in a form it can write (jsonb's version byte,
nested data as JSON text)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.connectors.postgres.catalog import PgColumn

#: format_type() of the column ADBC's binary COPY writes for an Arrow type
COPY_TYPES = {
    "bool": "boolean",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float": "real",
    "double": "double precision",
    "string": "text",
    "large_string": "text",
    "binary": "bytea",
    "large_binary": "bytea",
    "date32[day]": "date",
    "time64[us]": "time without time zone",
    "month_day_nano_interval": "interval",
}


def copies_into(dtype: pa.DataType, target: PgColumn) -> bool:
    """Whether a binary COPY of ``dtype`` lands in ``target`` exactly as a cast would.

    Text also goes into json, and into jsonb once ``jsonb_binary`` has added the format's
    version byte; decimals go into any numeric, which rounds to its scale as a cast does.
    Anything else (uuid, bounded varchar, nested data held as JSON, ...) is staged and cast.
    """
    import pyarrow as pa

    if pa.types.is_timestamp(dtype):
        wrote = f"timestamp {'with' if dtype.tz else 'without'} time zone"
    elif pa.types.is_decimal128(dtype):
        return target.pg_type == "numeric" or target.pg_type.startswith("numeric(")
    elif pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        item = COPY_TYPES.get(str(dtype.value_type))
        return item is not None and target.pg_type == f"{item}[]"
    else:
        wrote = COPY_TYPES.get(str(dtype), "")
    if wrote == "text":
        return target.pg_type in ("text", "character varying", "json", "jsonb")
    return bool(wrote) and wrote == target.pg_type


def jsonb_binary(batches: pa.RecordBatchReader, columns: list[str]) -> pa.RecordBatchReader:
    """JSON text in the binary COPY form of jsonb: a version byte (1), then the text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not columns:
        return batches
    schema = batches.schema
    for name in columns:
        schema = schema.set(schema.get_field_index(name), schema.field(name).with_type(pa.binary()))
    version, nothing = pa.scalar(b"\x01", pa.binary()), pa.scalar(b"", pa.binary())

    def convert() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            arrays = [
                pc.call_function(
                    "binary_join_element_wise", [version, column.cast(pa.binary()), nothing]
                )
                if name in columns
                else column
                for name, column in zip(batch.schema.names, batch.columns, strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, convert())


def ingestable(batches: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """Batches the ADBC ingest can write: structs (and lists holding them) as JSON text."""
    import pyarrow as pa

    def nested(dtype: pa.DataType) -> bool:
        if pa.types.is_struct(dtype) or pa.types.is_map(dtype):
            return True
        return bool(pa.types.is_list(dtype) and nested(dtype.value_type))

    to_json = [i for i, f in enumerate(batches.schema) if nested(f.type)]
    if not to_json:
        return batches
    fields = [f.with_type(pa.string()) if i in to_json else f for i, f in enumerate(batches.schema)]
    schema = pa.schema(fields)

    def convert() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns = [_json_text(c) if i in to_json else c for i, c in enumerate(batch.columns)]
            yield pa.RecordBatch.from_arrays(columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, convert())


def _json_text(column: pa.Array[Any]) -> pa.Array[Any]:
    """Nested values as JSON text (a Python loop: nested data is the slow path)."""
    import json

    import pyarrow as pa

    return pa.array(
        [
            None if v is None else json.dumps(v, default=str, ensure_ascii=False)
            for v in column.to_pylist()
        ],
        pa.string(),
    )
