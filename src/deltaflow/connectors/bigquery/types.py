"""What BigQuery can hold, as data: valid column and field names (``bigquery_names``),
the values a column cannot store (``bigquery_values``, whose rows go to quarantine), the
Arrow types columns are loaded as, and DATE / DATETIME / TIMESTAMP literals.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from deltaflow.schema.mappings import parquet_type
from deltaflow.schema.types import LogicalType, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa


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
