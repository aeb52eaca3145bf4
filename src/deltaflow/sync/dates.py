"""``parse_dates``: text or integer columns such as 20240131 read as dates."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from deltaflow.errors import DataError, SchemaError, did_you_mean
from deltaflow.schema.types import LogicalType, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa


def parsed_dates(schema: TableSchema, formats: dict[str, str]) -> TableSchema:
    """The schema with the ``parse_dates`` columns as dates."""
    for name in formats:
        column = schema.column(name)
        if column is None:
            raise SchemaError(
                f"parse_dates names '{name}', not a column of the stream."
                f"{did_you_mean(name, schema.names)}",
                hint=f"columns: {', '.join(schema.names)}",
            )
        if column.type.kind not in ("string", "int32", "int64"):
            raise SchemaError(
                f"parse_dates.{name}: the column is {column.type}, not text or an integer",
                hint="parse_dates turns text like 20240131 into a DATE; remove this column",
            )
    return TableSchema(
        tuple(
            replace(c, type=LogicalType("date")) if c.name in formats else c for c in schema.columns
        ),
        schema.primary_key,
    )


def parse_dates(batch: pa.RecordBatch, formats: dict[str, str]) -> pa.RecordBatch:
    """The ``parse_dates`` columns parsed to dates; an empty string is NULL, and a value
    that does not parse stops the step with the column, the value and the format."""
    if not formats:
        return batch
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = list(batch.columns)
    for name, fmt in formats.items():
        i = batch.schema.get_field_index(name)
        text: Any = columns[i].cast(pa.string())
        text = pc.if_else(pc.equal(text, pa.scalar("")), pa.scalar(None, pa.string()), text)
        parsed: Any = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        failed: Any = pc.and_(pc.is_null(parsed), pc.is_valid(text))
        if pc.any(failed).as_py():
            first = text.filter(failed)[0].as_py()
            raise DataError(
                f"column {name}: '{first}' is not a date in the format '{fmt}' "
                f"({pc.sum(failed).as_py()} such values in this batch)",
                hint=f"fix the values at the source, or correct parse_dates.{name}",
            )
        columns[i] = parsed.cast(pa.date32())
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
