"""Logical type -> engine column type, one table per engine.

A table maps a logical kind to a type name, or to a function for the parametrised kinds
(decimal, timestamp, list, struct). Adding an engine is adding a table here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from deltaflow.errors import UnsupportedTypeError
from deltaflow.schema.types import Column, LogicalType, to_arrow

if TYPE_CHECKING:
    import pyarrow as pa

Rule = str | Callable[[LogicalType, "TypeMapper"], str]


class TypeMapper:
    """Renders logical types as column types of one engine, from its table."""

    def __init__(self, engine: str, table: Mapping[str, Rule], quote: Callable[[str], str]):
        self.engine = engine
        self.table = table
        self.quote = quote

    def __call__(self, logical: LogicalType) -> str:
        rule = self.table.get(logical.kind)
        if rule is None:
            raise UnsupportedTypeError(
                f"{self.engine} has no column type for logical type '{logical}'",
                hint=f"cast the column in the source; {self.engine} supports: "
                f"{', '.join(sorted(self.table))}",
            )
        return rule if isinstance(rule, str) else rule(logical, self)


def quote_double(identifier: str) -> str:
    """A double-quoted SQL identifier; embedded quotes are doubled, so names cannot inject."""
    return '"' + identifier.replace('"', '""') + '"'


def quote_single(text: str) -> str:
    """A single-quoted SQL string literal; embedded quotes are doubled."""
    return "'" + text.replace("'", "''") + "'"


def _decimal(t: LogicalType, m: TypeMapper) -> str:
    precision, scale = t.precision or 0, t.scale or 0
    if not precision or precision > 38:
        return "VARCHAR"  # DuckDB decimals stop at 38 digits; keep the exact text
    return f"DECIMAL({precision},{scale})"


def _duckdb_timestamp(t: LogicalType, m: TypeMapper) -> str:
    if t.tz:
        return "TIMESTAMPTZ"
    return {"s": "TIMESTAMP_S", "ms": "TIMESTAMP_MS", "ns": "TIMESTAMP_NS"}.get(
        t.unit or "us", "TIMESTAMP"
    )


def _duckdb_time(t: LogicalType, m: TypeMapper) -> str:
    return "TIME_NS" if t.unit == "ns" else "TIME"  # TIME keeps microseconds


def _duckdb_list(t: LogicalType, m: TypeMapper) -> str:
    assert t.item is not None
    return f"{m(t.item)}[]"


def _duckdb_struct(t: LogicalType, m: TypeMapper) -> str:
    return "STRUCT(" + ", ".join(f"{m.quote(c.name)} {m(c.type)}" for c in t.fields) + ")"


DUCKDB_TYPES: dict[str, Rule] = {
    "null": "INTEGER",  # an all-NULL column; widened when real values arrive
    "boolean": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "float32": "REAL",
    "float64": "DOUBLE",
    "decimal": _decimal,
    "string": "VARCHAR",
    "binary": "BLOB",
    "date": "DATE",
    "time": _duckdb_time,
    "timestamp": _duckdb_timestamp,
    "interval": "INTERVAL",
    "json": "JSON",
    "uuid": "UUID",
    "list": _duckdb_list,
    "struct": _duckdb_struct,
}

#: How each logical type is stored in Parquet: "native" keeps its Arrow type, "text"
#: writes its canonical string form. Kinds missing here cannot be written to Parquet.
PARQUET_TYPES: dict[str, Literal["native", "text"]] = {
    "null": "native",
    "boolean": "native",
    "int8": "native",
    "int16": "native",
    "int32": "native",
    "int64": "native",
    "uint8": "native",
    "uint16": "native",
    "uint32": "native",
    "uint64": "native",
    "float32": "native",
    "float64": "native",
    "decimal": "native",
    "string": "native",
    "binary": "native",
    "date": "native",
    "time": "native",
    "timestamp": "native",
    "json": "text",
    "uuid": "text",
    "list": "native",
    "struct": "native",
}


def parquet_type(logical: LogicalType) -> pa.DataType:
    """The Arrow type a logical type is written to Parquet as (see PARQUET_TYPES)."""
    import pyarrow as pa

    rule = PARQUET_TYPES.get(logical.kind)
    if rule is None:
        raise UnsupportedTypeError(
            f"Parquet cannot store logical type '{logical}'",
            hint="cast the column to a string in the source query",
        )
    if rule == "text":
        return pa.string()
    if logical.kind == "list":
        assert logical.item is not None
        return pa.list_(parquet_type(logical.item))
    if logical.kind == "struct":
        return pa.struct(
            [pa.field(c.name, parquet_type(c.type), c.nullable) for c in logical.fields]
        )
    return to_arrow(logical)


duckdb_type = TypeMapper("DuckDB", DUCKDB_TYPES, quote_double)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_decimal(t: LogicalType, m: TypeMapper) -> str:
    return "numeric" if t.precision is None else f"numeric({t.precision},{t.scale or 0})"


def _pg_timestamp(t: LogicalType, m: TypeMapper) -> str:
    return "timestamptz" if t.tz else "timestamp"


def _pg_list(t: LogicalType, m: TypeMapper) -> str:
    """A native array when the element is a scalar PostgreSQL can hold, else JSONB."""
    assert t.item is not None
    if t.item.kind in ("list", "struct", "null", "json"):
        return "jsonb"
    return f"{m(t.item)}[]"


POSTGRES_TYPES: dict[str, Rule] = {
    "null": "text",
    "boolean": "boolean",
    "int8": "smallint",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "uint8": "smallint",
    "uint16": "integer",
    "uint32": "bigint",
    "uint64": "numeric(20,0)",
    "float32": "real",
    "float64": "double precision",
    "decimal": _pg_decimal,
    "string": "text",
    "binary": "bytea",
    "date": "date",
    "time": "time",
    "timestamp": _pg_timestamp,
    "interval": "interval",
    "json": "jsonb",
    "uuid": "uuid",
    "list": _pg_list,
    "struct": "jsonb",
}

postgres_type = TypeMapper("PostgreSQL", POSTGRES_TYPES, quote_double)

#: PostgreSQL type name (pg_type.typname) -> logical type. Enums read as strings, domains
#: as their base type, arrays as lists of their element; any other type reads as its text
#: form, with a warning that names the column.
POSTGRES_LOGICAL: dict[str, LogicalType] = {
    "bool": LogicalType("boolean"),
    "int2": LogicalType("int16"),
    "int4": LogicalType("int32"),
    "int8": LogicalType("int64"),
    "float4": LogicalType("float32"),
    "float8": LogicalType("float64"),
    "text": LogicalType("string"),
    "varchar": LogicalType("string"),
    "bpchar": LogicalType("string"),
    "name": LogicalType("string"),
    "char": LogicalType("string"),
    "citext": LogicalType("string"),
    "uuid": LogicalType("uuid"),
    "bytea": LogicalType("binary"),
    "date": LogicalType("date"),
    "time": LogicalType("time", unit="us"),
    "timestamp": LogicalType("timestamp", unit="us"),
    "timestamptz": LogicalType("timestamp", unit="us", tz="UTC"),
    "interval": LogicalType("interval"),
    "json": LogicalType("json"),
    "jsonb": LogicalType("json"),
}


def postgres_logical(typname: str, typmod: int) -> LogicalType | None:
    """The logical type of a PostgreSQL scalar type, or None when it has none."""
    if typname == "numeric":
        if typmod < 4:
            return LogicalType("decimal")  # unconstrained: exact text
        return LogicalType(
            "decimal", precision=((typmod - 4) >> 16) & 0xFFFF, scale=(typmod - 4) & 0xFFFF
        )
    return POSTGRES_LOGICAL.get(typname)


# --------------------------------------------------------------------------- MongoDB

#: BSON type (its ``$type`` alias) -> logical type. Documents and arrays are inferred per
#: field path by sampling: a document becomes a struct of its fields (JSON beyond
#: ``max_nesting``), an array a list of its elements' type when they agree (else JSON);
#: a field whose types conflict becomes JSON. The scalar types map as below.
MONGODB_LOGICAL: dict[str, LogicalType] = {
    "double": LogicalType("float64"),
    "string": LogicalType("string"),
    "objectId": LogicalType("string"),  # its 24 hex digits
    "bool": LogicalType("boolean"),
    "date": LogicalType("timestamp", unit="ms", tz="UTC"),  # BSON keeps milliseconds
    "null": LogicalType("null"),
    "int": LogicalType("int64"),  # int32 and int64 are one column: values move between them
    "long": LogicalType("int64"),
    "decimal": LogicalType("decimal"),  # Decimal128: 34 digits, any exponent: exact text
    "binData": LogicalType("binary"),
    "uuid": LogicalType("uuid"),  # binData of subtype 4
    "timestamp": LogicalType(
        "struct",
        fields=(
            Column("t", LogicalType("timestamp", unit="s", tz="UTC"), False),
            Column("i", LogicalType("int64"), False),
        ),
    ),  # the replication clock: seconds and an increment
    "regex": LogicalType("string"),  # /pattern/flags
    "javascript": LogicalType("string"),
    "symbol": LogicalType("string"),
    "minKey": LogicalType("string"),
    "maxKey": LogicalType("string"),
}


# --------------------------------------------------------------------------- BigQuery

#: NUMERIC holds 29 integer digits and 9 after the point; BIGNUMERIC 38 and 38.
NUMERIC_DIGITS, NUMERIC_SCALE = 29, 9
BIGNUMERIC_DIGITS, BIGNUMERIC_SCALE = 38, 38


def quote_backtick(identifier: str) -> str:
    """A BigQuery quoted identifier; backslashes and backticks are escaped."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _bq_decimal(t: LogicalType, m: TypeMapper) -> str:
    """NUMERIC when it holds the declared digits, else BIGNUMERIC, else the exact text.

    An unconstrained decimal (PostgreSQL ``numeric``) becomes BIGNUMERIC, the widest exact
    type; a value beyond it cannot be loaded and is reported, never rounded.
    """
    if t.precision is None:
        return "BIGNUMERIC"
    scale = t.scale or 0
    digits = t.precision - scale
    if digits <= NUMERIC_DIGITS and scale <= NUMERIC_SCALE:
        return f"NUMERIC({t.precision}, {scale})"
    if digits <= BIGNUMERIC_DIGITS and scale <= BIGNUMERIC_SCALE:
        return f"BIGNUMERIC({t.precision}, {scale})"
    return "STRING"


def _bq_timestamp(t: LogicalType, m: TypeMapper) -> str:
    return "TIMESTAMP" if t.tz else "DATETIME"  # an instant, or a wall-clock time


def _bq_list(t: LogicalType, m: TypeMapper) -> str:
    """ARRAY of the element; BigQuery has no array of arrays, so those become JSON."""
    assert t.item is not None
    if t.item.kind in ("list", "null", "json"):
        return "JSON"
    return f"ARRAY<{m(t.item)}>"


def _bq_struct(t: LogicalType, m: TypeMapper) -> str:
    return "STRUCT<" + ", ".join(f"{m.quote(c.name)} {m(c.type)}" for c in t.fields) + ">"


BIGQUERY_TYPES: dict[str, Rule] = {
    "null": "STRING",  # an all-NULL column; widened when real values arrive
    "boolean": "BOOL",
    "int8": "INT64",
    "int16": "INT64",
    "int32": "INT64",
    "int64": "INT64",
    "uint8": "INT64",
    "uint16": "INT64",
    "uint32": "INT64",
    "uint64": "NUMERIC(20, 0)",
    "float32": "FLOAT64",
    "float64": "FLOAT64",
    "decimal": _bq_decimal,
    "string": "STRING",
    "binary": "BYTES",
    "date": "DATE",
    "time": "TIME",
    "timestamp": _bq_timestamp,
    "interval": "INTERVAL",
    "json": "JSON",
    "uuid": "STRING",
    "list": _bq_list,
    "struct": _bq_struct,
}

bigquery_type = TypeMapper("BigQuery", BIGQUERY_TYPES, quote_backtick)

#: BigQuery field type (as the API reports it) -> logical type; REPEATED fields are lists
#: of these and RECORD fields structs. GEOGRAPHY and RANGE read as their text.
BIGQUERY_LOGICAL: dict[str, LogicalType] = {
    "INTEGER": LogicalType("int64"),
    "INT64": LogicalType("int64"),
    "FLOAT": LogicalType("float64"),
    "FLOAT64": LogicalType("float64"),
    "BOOLEAN": LogicalType("boolean"),
    "BOOL": LogicalType("boolean"),
    "STRING": LogicalType("string"),
    "BYTES": LogicalType("binary"),
    "DATE": LogicalType("date"),
    "TIME": LogicalType("time", unit="us"),
    "DATETIME": LogicalType("timestamp", unit="us"),
    "TIMESTAMP": LogicalType("timestamp", unit="us", tz="UTC"),
    "JSON": LogicalType("json"),
    "GEOGRAPHY": LogicalType("string"),
}


def bigquery_logical(field: Any) -> LogicalType:
    """The logical type of a google.cloud.bigquery SchemaField."""
    kind = field.field_type.upper()
    if kind in ("RECORD", "STRUCT"):
        logical = LogicalType(
            "struct",
            fields=tuple(
                Column(f.name, bigquery_logical(f), f.mode != "REQUIRED") for f in field.fields
            ),
        )
    elif kind in ("NUMERIC", "BIGNUMERIC"):
        default = (38, 9) if kind == "NUMERIC" else (76, 38)
        precision = field.precision or default[0]
        scale = field.scale if field.precision else default[1]
        logical = LogicalType("decimal", precision=precision, scale=scale or 0)
    else:
        logical = BIGQUERY_LOGICAL.get(kind, LogicalType("string"))
    return LogicalType("list", item=logical) if field.mode == "REPEATED" else logical
