"""Quarantine: rows a destination cannot hold are kept with their reason, never dropped.

A destination that finds such rows loads the others and writes these to a quarantine
table next to its table (``<table>__quarantine``) in the same transaction, one row per
rejected record:

======================  =======================================================
run_id                  the run that met the record
quarantined_at          when (UTC)
stream                  the stream it came from
reason_code             a stable code, e.g. ``BQ_OUT_OF_RANGE``
reason                  what is wrong, naming the column and the value
record                  the original record as a JSON object
======================  =======================================================
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SUFFIX = "__quarantine"


def schema() -> pa.Schema:
    import pyarrow as pa

    fields: list[pa.Field[Any]] = [
        pa.field("run_id", pa.string(), False),
        pa.field("quarantined_at", pa.timestamp("us", tz="UTC"), False),
        pa.field("stream", pa.string(), False),
        pa.field("reason_code", pa.string(), False),
        pa.field("reason", pa.string(), False),
        pa.field("record", pa.string(), False),
    ]
    return pa.schema(fields)


def records(
    rows: pa.Table, reasons: pa.Array[Any], code: str, *, run_id: str, stream: str
) -> pa.Table:
    """Quarantine rows for ``rows`` (the original records) and their ``reasons``."""
    import pyarrow as pa

    text = [str(r) for r in reasons.cast(pa.string()).to_pylist()]
    return from_json(as_json(rows), text, code, run_id=run_id, stream=stream)


def as_json(rows: pa.Table) -> list[str]:
    """Each row as a JSON object. Dates, times and decimals are written as Arrow formats
    them (so a date Python cannot hold, like year 10000, keeps its value); bytes as
    base64."""
    import pyarrow as pa

    readable = pa.table(
        [column.cast(_readable(column.type)) for column in rows.columns], names=rows.column_names
    )
    return [json.dumps(row, default=_default, ensure_ascii=False) for row in readable.to_pylist()]


def _readable(dtype: pa.DataType) -> pa.DataType:
    """``dtype`` with temporal and decimal leaves as strings."""
    import pyarrow as pa

    if pa.types.is_temporal(dtype) or pa.types.is_decimal(dtype):
        return pa.string()
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return pa.list_(_readable(dtype.value_type))
    if pa.types.is_struct(dtype):
        return pa.struct([f.with_type(_readable(f.type)) for f in dtype])
    return dtype


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def from_json(
    records_json: list[str], reasons: list[str], code: str, *, run_id: str, stream: str
) -> pa.Table:
    """Quarantine rows for records already written as JSON (e.g. source documents)."""
    import pyarrow as pa

    now = dt.datetime.now(dt.UTC)
    count = len(records_json)
    return pa.Table.from_arrays(
        [
            pa.array([run_id] * count, pa.string()),
            pa.array([now] * count, pa.timestamp("us", tz="UTC")),
            pa.array([stream] * count, pa.string()),
            pa.array([code] * count, pa.string()),
            pa.array(reasons, pa.string()),
            pa.array(records_json, pa.string()),
        ],
        schema=schema(),
    )
