"""Logical types: the engine-neutral vocabulary every schema is written in.

Each logical type maps to exactly one Arrow type (the data plane) and, through a table
per engine in ``deltaflow.schema.mappings``, to that engine's column types.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from deltaflow.errors import UnsupportedTypeError

if TYPE_CHECKING:
    import pyarrow as pa

Kind = Literal[
    "null",
    "boolean",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "decimal",
    "string",
    "binary",
    "date",
    "time",
    "timestamp",
    "interval",
    "json",
    "uuid",
    "list",
    "struct",
]

TimeUnit = Literal["s", "ms", "us", "ns"]


@dataclass(frozen=True)
class LogicalType:
    """One type. ``precision``/``scale`` for decimal (no precision: unconstrained, carried as
    exact text), ``unit``/``tz`` for time and timestamp,
    ``unit`` for an interval that is a fixed duration (Arrow ``duration``; without a unit an
    interval is Arrow's month/day/nanosecond interval), ``item`` for list, ``fields`` for
    struct."""

    kind: Kind
    precision: int | None = None
    scale: int | None = None
    unit: TimeUnit | None = None
    tz: str | None = None
    item: LogicalType | None = None
    fields: tuple[Column, ...] = ()

    def __str__(self) -> str:
        if self.kind == "decimal":
            return (
                "decimal" if self.precision is None else f"decimal({self.precision},{self.scale})"
            )
        if self.kind == "timestamp":
            return f"timestamp[{self.unit}{', ' + self.tz if self.tz else ''}]"
        if self.kind in ("time", "interval") and self.unit:
            return f"{self.kind}[{self.unit}]"
        if self.kind == "list":
            return f"list<{self.item}>"
        if self.kind == "struct":
            return "struct<" + ", ".join(f"{c.name}: {c.type}" for c in self.fields) + ">"
        return self.kind


@dataclass(frozen=True)
class Column:
    name: str
    type: LogicalType
    nullable: bool = True


@dataclass(frozen=True)
class TableSchema:
    """Columns in order, plus the primary key (possibly empty)."""

    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @classmethod
    def from_arrow(cls, schema: pa.Schema, primary_key: tuple[str, ...] = ()) -> TableSchema:
        return cls(
            tuple(Column(f.name, from_arrow(f.type), f.nullable) for f in schema), primary_key
        )

    def to_arrow(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(c.name, to_arrow(c.type), c.nullable) for c in self.columns])


_SIMPLE: dict[str, Kind] = {
    "null": "null",
    "bool": "boolean",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "halffloat": "float32",
    "float": "float32",
    "double": "float64",
    "string": "string",
    "large_string": "string",
    "string_view": "string",
    "binary": "binary",
    "large_binary": "binary",
    "binary_view": "binary",
    "date32[day]": "date",
    "date64[ms]": "date",
    "month_day_nano_interval": "interval",
}


def from_arrow(dtype: pa.DataType) -> LogicalType:
    """The logical type of an Arrow type; raises UnsupportedTypeError for the rest."""
    import pyarrow as pa

    name = str(dtype)
    if name in _SIMPLE:
        return LogicalType(_SIMPLE[name])
    if isinstance(dtype, pa.BaseExtensionType):  # canonical (arrow.json) and Python-defined
        return _from_extension(dtype)
    if pa.types.is_decimal(dtype):
        return LogicalType("decimal", precision=dtype.precision, scale=dtype.scale)
    if pa.types.is_timestamp(dtype):
        return LogicalType("timestamp", unit=dtype.unit, tz=dtype.tz)
    if pa.types.is_time(dtype):
        return LogicalType("time", unit=dtype.unit)
    if pa.types.is_duration(dtype):
        return LogicalType("interval", unit=dtype.unit)
    if pa.types.is_dictionary(dtype):
        return from_arrow(dtype.value_type)
    if (
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
        or pa.types.is_list_view(dtype)
        or pa.types.is_large_list_view(dtype)
    ):
        return LogicalType("list", item=from_arrow(dtype.value_type))
    if pa.types.is_struct(dtype):
        fields = tuple(Column(f.name, from_arrow(f.type), f.nullable) for f in dtype)
        return LogicalType("struct", fields=fields)
    if pa.types.is_fixed_size_binary(dtype):
        return LogicalType("binary")
    raise UnsupportedTypeError(
        f"Arrow type '{dtype}' has no logical type",
        hint="cast the column in the source query (e.g. to a string or JSON)",
    )


def _from_extension(dtype: pa.BaseExtensionType) -> LogicalType:
    name = dtype.extension_name
    if name == "arrow.json":
        return LogicalType("json")
    if name == "arrow.uuid":
        return LogicalType("uuid")
    return from_arrow(dtype.storage_type)


def to_arrow(logical: LogicalType) -> pa.DataType:
    """The Arrow type that carries a logical type in record batches."""
    import pyarrow as pa

    kind = logical.kind
    if kind == "decimal" and logical.precision is None:
        return pa.string()  # an unconstrained decimal travels as its exact text
    if kind == "decimal":
        precision, scale = logical.precision or 38, logical.scale or 0
        return (
            pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        )
    if kind == "timestamp":
        return pa.timestamp(logical.unit or "us", tz=logical.tz)
    if kind == "time":
        if logical.unit in ("s", "ms"):
            return pa.time32(logical.unit)
        return pa.time64("ns" if logical.unit == "ns" else "us")
    if kind == "interval" and logical.unit:
        return pa.duration(logical.unit)  # a plain cast from duration to interval does not exist
    if kind == "list":
        assert logical.item is not None
        return pa.list_(to_arrow(logical.item))
    if kind == "struct":
        return pa.struct([pa.field(c.name, to_arrow(c.type), c.nullable) for c in logical.fields])
    return _arrow_factories()[kind]()


@functools.cache
def _arrow_factories() -> dict[str, Callable[[], pa.DataType]]:
    import pyarrow as pa

    return {
        "null": pa.null,
        "boolean": pa.bool_,
        "int8": pa.int8,
        "int16": pa.int16,
        "int32": pa.int32,
        "int64": pa.int64,
        "uint8": pa.uint8,
        "uint16": pa.uint16,
        "uint32": pa.uint32,
        "uint64": pa.uint64,
        "float32": pa.float32,
        "float64": pa.float64,
        "string": pa.string,
        "binary": pa.binary,
        "date": pa.date32,
        "interval": pa.month_day_nano_interval,
        "json": pa.string,
        "uuid": pa.string,
    }


#: the type names a config may declare (``parse_type``)
DECLARABLE = (
    "boolean",
    "int32",
    "int64",
    "float64",
    "decimal",
    "decimal(P,S)",
    "string",
    "binary",
    "date",
    "timestamp",
    "timestamptz",
    "json",
    "uuid",
)
_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def parse_type(text: str) -> LogicalType:
    """A declared type: one of ``DECLARABLE`` ('timestamp' is naive, 'timestamptz' UTC,
    both in microseconds; 'decimal' without digits keeps any value exactly)."""
    name = text.strip().lower()
    match = _DECIMAL.match(name)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 76 or scale > precision:
            raise ValueError(
                f"'{text}': a decimal has 1 to 76 digits and at most as many after the point"
            )
        return LogicalType("decimal", precision=precision, scale=scale)
    if name == "timestamp":
        return LogicalType("timestamp", unit="us")
    if name == "timestamptz":
        return LogicalType("timestamp", unit="us", tz="UTC")
    if name in DECLARABLE and name != "decimal(P,S)":
        return LogicalType(name)  # type: ignore[arg-type]
    raise ValueError(f"'{text}' is not a type; use one of: {', '.join(DECLARABLE)}")
