"""Logical types: Arrow round trips, the DuckDB and Parquet mappings, identifier quoting."""

from __future__ import annotations

import typing

import duckdb
import pyarrow as pa
import pytest

from deltaflow.errors import UnsupportedTypeError
from deltaflow.schema import (
    DUCKDB_TYPES,
    PARQUET_TYPES,
    Column,
    LogicalType,
    TableSchema,
    duckdb_type,
    from_arrow,
    parquet_type,
    quote_double,
    to_arrow,
)
from deltaflow.schema.types import Kind

ALL_KINDS = set(typing.get_args(Kind))

ITEM_STRUCT = LogicalType(
    "struct",
    fields=(
        Column("sku", LogicalType("string")),
        Column("qty", LogicalType("int32"), nullable=False),
        Column("price", LogicalType("decimal", precision=38, scale=9)),
    ),
)

# Arrow types that are the canonical carrier of their logical type: Arrow -> logical -> Arrow
# gives the same type back.
CANONICAL_ARROW: list[tuple[pa.DataType, LogicalType]] = [
    (pa.null(), LogicalType("null")),
    (pa.bool_(), LogicalType("boolean")),
    (pa.int8(), LogicalType("int8")),
    (pa.int16(), LogicalType("int16")),
    (pa.int32(), LogicalType("int32")),
    (pa.int64(), LogicalType("int64")),
    (pa.uint8(), LogicalType("uint8")),
    (pa.uint16(), LogicalType("uint16")),
    (pa.uint32(), LogicalType("uint32")),
    (pa.uint64(), LogicalType("uint64")),
    (pa.float32(), LogicalType("float32")),
    (pa.float64(), LogicalType("float64")),
    (pa.decimal128(38, 9), LogicalType("decimal", precision=38, scale=9)),
    (pa.decimal128(10, 0), LogicalType("decimal", precision=10, scale=0)),
    (pa.decimal256(50, 10), LogicalType("decimal", precision=50, scale=10)),
    (pa.string(), LogicalType("string")),
    (pa.binary(), LogicalType("binary")),
    (pa.date32(), LogicalType("date")),
    (pa.time32("s"), LogicalType("time", unit="s")),
    (pa.time32("ms"), LogicalType("time", unit="ms")),
    (pa.time64("us"), LogicalType("time", unit="us")),
    (pa.time64("ns"), LogicalType("time", unit="ns")),
    (pa.timestamp("s"), LogicalType("timestamp", unit="s")),
    (pa.timestamp("ms"), LogicalType("timestamp", unit="ms")),
    (pa.timestamp("us"), LogicalType("timestamp", unit="us")),
    (pa.timestamp("ns"), LogicalType("timestamp", unit="ns")),
    (pa.timestamp("us", tz="UTC"), LogicalType("timestamp", unit="us", tz="UTC")),
    (
        pa.timestamp("ms", tz="Europe/Berlin"),
        LogicalType("timestamp", unit="ms", tz="Europe/Berlin"),
    ),
    (pa.month_day_nano_interval(), LogicalType("interval")),
    (pa.duration("s"), LogicalType("interval", unit="s")),
    (pa.duration("ns"), LogicalType("interval", unit="ns")),
    (pa.list_(pa.int64()), LogicalType("list", item=LogicalType("int64"))),
    (
        pa.list_(
            pa.struct(
                [
                    pa.field("sku", pa.string()),
                    pa.field("qty", pa.int32(), nullable=False),
                    pa.field("price", pa.decimal128(38, 9)),
                ]
            )
        ),
        LogicalType("list", item=ITEM_STRUCT),
    ),
    (
        pa.struct([pa.field("tags", pa.list_(pa.string())), pa.field("at", pa.timestamp("us"))]),
        LogicalType(
            "struct",
            fields=(
                Column("tags", LogicalType("list", item=LogicalType("string"))),
                Column("at", LogicalType("timestamp", unit="us")),
            ),
        ),
    ),
]


@pytest.mark.parametrize(("arrow", "logical"), CANONICAL_ARROW, ids=str)
def test_canonical_arrow_types_round_trip(arrow: pa.DataType, logical: LogicalType) -> None:
    assert from_arrow(arrow) == logical
    assert to_arrow(logical) == arrow
    assert from_arrow(to_arrow(logical)) == logical


def test_every_kind_has_a_round_trip_case() -> None:
    covered = {logical.kind for _, logical in CANONICAL_ARROW} | {"json", "uuid"}
    assert covered == ALL_KINDS


# Other Arrow encodings of the same data collapse onto one logical type.
EQUIVALENT_ARROW: list[tuple[pa.DataType, LogicalType, pa.DataType]] = [
    (pa.large_string(), LogicalType("string"), pa.string()),
    (pa.string_view(), LogicalType("string"), pa.string()),
    (pa.dictionary(pa.int32(), pa.string()), LogicalType("string"), pa.string()),
    (pa.dictionary(pa.int8(), pa.large_string()), LogicalType("string"), pa.string()),
    (pa.large_binary(), LogicalType("binary"), pa.binary()),
    (pa.binary(16), LogicalType("binary"), pa.binary()),
    (pa.float16(), LogicalType("float32"), pa.float32()),
    (pa.date64(), LogicalType("date"), pa.date32()),
    (pa.decimal32(7, 2), LogicalType("decimal", precision=7, scale=2), pa.decimal128(7, 2)),
    (pa.decimal64(18, 4), LogicalType("decimal", precision=18, scale=4), pa.decimal128(18, 4)),
    (pa.large_list(pa.int8()), LogicalType("list", item=LogicalType("int8")), pa.list_(pa.int8())),
    (
        pa.list_(pa.float64(), 3),
        LogicalType("list", item=LogicalType("float64")),
        pa.list_(pa.float64()),
    ),
    (
        pa.list_view(pa.string()),
        LogicalType("list", item=LogicalType("string")),
        pa.list_(pa.string()),
    ),
    (
        pa.large_list_view(pa.int16()),
        LogicalType("list", item=LogicalType("int16")),
        pa.list_(pa.int16()),
    ),
]


@pytest.mark.parametrize(("arrow", "logical", "carrier"), EQUIVALENT_ARROW, ids=str)
def test_equivalent_arrow_encodings_map_to_one_logical_type(
    arrow: pa.DataType, logical: LogicalType, carrier: pa.DataType
) -> None:
    assert from_arrow(arrow) == logical
    assert to_arrow(logical) == carrier


def test_dictionary_encoded_strings_cast_to_their_logical_carrier() -> None:
    values = pa.array(["a", "b", "a", None]).dictionary_encode()
    carried = values.cast(to_arrow(from_arrow(values.type)))
    assert carried.type == pa.string()
    assert carried.to_pylist() == ["a", "b", "a", None]


def test_duration_values_cast_to_their_logical_carrier() -> None:
    values = pa.array([1, None], pa.duration("ms"))
    assert values.cast(to_arrow(from_arrow(values.type))).equals(values)


def test_time_units_survive_the_round_trip() -> None:
    values = pa.array([1_500, None], pa.time32("ms"))
    carrier = to_arrow(from_arrow(values.type))
    assert values.cast(carrier).equals(values)


@pytest.mark.parametrize(
    ("extension", "kind"), [(pa.json_(), "json"), (pa.uuid(), "uuid")], ids=["json", "uuid"]
)
def test_canonical_extension_types(extension: pa.DataType, kind: Kind) -> None:
    logical = from_arrow(extension)
    assert logical == LogicalType(kind)
    # Both travel as their canonical text in record batches.
    assert to_arrow(logical) == pa.string()


def test_json_extension_values_cast_to_text() -> None:
    values = pa.array(['{"a": 1}', None], pa.json_())
    assert values.cast(to_arrow(from_arrow(values.type))).to_pylist() == ['{"a": 1}', None]


class _Money(pa.ExtensionType):
    def __init__(self) -> None:
        super().__init__(pa.int64(), "test.money")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: pa.DataType, serialized: bytes) -> _Money:
        return cls()


def test_unknown_extension_type_maps_by_its_storage() -> None:
    assert from_arrow(_Money()) == LogicalType("int64")


def test_types_without_a_logical_type_raise_with_a_hint() -> None:
    with pytest.raises(UnsupportedTypeError, match=r"map<string, int64>") as info:
        from_arrow(pa.map_(pa.string(), pa.int64()))
    assert info.value.hint is not None
    assert "cast" in info.value.hint


def test_unsupported_type_inside_a_struct_is_reported() -> None:
    with pytest.raises(UnsupportedTypeError):
        from_arrow(pa.struct([pa.field("m", pa.map_(pa.string(), pa.string()))]))


def test_table_schema_round_trips_names_nullability_and_key() -> None:
    arrow = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("items", pa.list_(pa.struct([pa.field("sku", pa.string())]))),
            pa.field("at", pa.timestamp("us", tz="UTC")),
        ]
    )
    schema = TableSchema.from_arrow(arrow, primary_key=("id",))
    assert schema.names == ["id", "items", "at"]
    assert schema.primary_key == ("id",)
    id_column = schema.column("id")
    assert id_column is not None
    assert not id_column.nullable
    assert schema.column("missing") is None
    assert schema.to_arrow().equals(arrow)


@pytest.mark.parametrize(
    ("logical", "text"),
    [
        (LogicalType("decimal", precision=38, scale=9), "decimal(38,9)"),
        (LogicalType("timestamp", unit="ns"), "timestamp[ns]"),
        (LogicalType("timestamp", unit="us", tz="UTC"), "timestamp[us, UTC]"),
        (LogicalType("time", unit="ms"), "time[ms]"),
        (LogicalType("interval"), "interval"),
        (
            LogicalType("list", item=ITEM_STRUCT),
            "list<struct<sku: string, qty: int32, price: decimal(38,9)>>",
        ),
    ],
)
def test_logical_type_text(logical: LogicalType, text: str) -> None:
    assert str(logical) == text


# --------------------------------------------------------------------------- DuckDB mapping

DUCKDB_GOLDEN: list[tuple[LogicalType, str]] = [
    (LogicalType("null"), "INTEGER"),
    (LogicalType("boolean"), "BOOLEAN"),
    (LogicalType("int8"), "TINYINT"),
    (LogicalType("int16"), "SMALLINT"),
    (LogicalType("int32"), "INTEGER"),
    (LogicalType("int64"), "BIGINT"),
    (LogicalType("uint8"), "UTINYINT"),
    (LogicalType("uint16"), "USMALLINT"),
    (LogicalType("uint32"), "UINTEGER"),
    (LogicalType("uint64"), "UBIGINT"),
    (LogicalType("float32"), "REAL"),
    (LogicalType("float64"), "DOUBLE"),
    (LogicalType("decimal", precision=38, scale=9), "DECIMAL(38,9)"),
    (LogicalType("decimal", precision=10, scale=0), "DECIMAL(10,0)"),
    (LogicalType("decimal", precision=50, scale=10), "VARCHAR"),
    (LogicalType("string"), "VARCHAR"),
    (LogicalType("binary"), "BLOB"),
    (LogicalType("date"), "DATE"),
    (LogicalType("time", unit="s"), "TIME"),
    (LogicalType("time", unit="us"), "TIME"),
    (LogicalType("time", unit="ns"), "TIME_NS"),
    (LogicalType("timestamp", unit="s"), "TIMESTAMP_S"),
    (LogicalType("timestamp", unit="ms"), "TIMESTAMP_MS"),
    (LogicalType("timestamp", unit="us"), "TIMESTAMP"),
    (LogicalType("timestamp", unit="ns"), "TIMESTAMP_NS"),
    (LogicalType("timestamp", unit="ns", tz="UTC"), "TIMESTAMPTZ"),
    (LogicalType("timestamp", unit="us", tz="Europe/Berlin"), "TIMESTAMPTZ"),
    (LogicalType("interval"), "INTERVAL"),
    (LogicalType("interval", unit="s"), "INTERVAL"),
    (LogicalType("json"), "JSON"),
    (LogicalType("uuid"), "UUID"),
    (LogicalType("list", item=LogicalType("int64")), "BIGINT[]"),
    (
        LogicalType("list", item=ITEM_STRUCT),
        'STRUCT("sku" VARCHAR, "qty" INTEGER, "price" DECIMAL(38,9))[]',
    ),
    (
        LogicalType(
            "struct", fields=(Column('a"b', LogicalType("list", item=LogicalType("date"))),)
        ),
        'STRUCT("a""b" DATE[])',
    ),
]


@pytest.mark.parametrize(("logical", "expected"), DUCKDB_GOLDEN, ids=str)
def test_duckdb_type_golden(logical: LogicalType, expected: str) -> None:
    assert duckdb_type(logical) == expected


def test_duckdb_golden_list_covers_every_kind() -> None:
    assert {logical.kind for logical, _ in DUCKDB_GOLDEN} == ALL_KINDS
    assert set(DUCKDB_TYPES) == ALL_KINDS


def test_duckdb_accepts_every_mapped_type() -> None:
    columns = ", ".join(
        f"{quote_double(f'c{i}')} {duckdb_type(logical)}"
        for i, (logical, _) in enumerate(DUCKDB_GOLDEN)
    )
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE t ({columns})")
        types = [row[1] for row in con.execute("DESCRIBE t").fetchall()]
    assert len(types) == len(DUCKDB_GOLDEN)
    assert types[DUCKDB_GOLDEN.index((LogicalType("time", unit="ns"), "TIME_NS"))] == "TIME_NS"


def test_duckdb_mapping_rejects_an_unmapped_kind_with_the_supported_list() -> None:
    from deltaflow.schema.mappings import TypeMapper

    mapper = TypeMapper("Tiny", {"string": "TEXT"}, quote_double)
    assert mapper(LogicalType("string")) == "TEXT"
    with pytest.raises(UnsupportedTypeError, match="Tiny has no column type") as info:
        mapper(LogicalType("list", item=LogicalType("string")))
    assert info.value.hint is not None
    assert "string" in info.value.hint


# --------------------------------------------------------------------------- Parquet mapping


@pytest.mark.parametrize("kind", ["json", "uuid"])
def test_parquet_stores_json_and_uuid_as_text(kind: Kind) -> None:
    assert PARQUET_TYPES[kind] == "text"
    assert parquet_type(LogicalType(kind)) == pa.string()


def test_parquet_type_is_recursive() -> None:
    nested = LogicalType(
        "list",
        item=LogicalType(
            "struct",
            fields=(Column("doc", LogicalType("json")), Column("n", LogicalType("int64"), False)),
        ),
    )
    assert parquet_type(nested) == pa.list_(
        pa.struct([pa.field("doc", pa.string()), pa.field("n", pa.int64(), nullable=False)])
    )


@pytest.mark.parametrize(
    "logical", [logical for _, logical in CANONICAL_ARROW if logical.kind != "interval"], ids=str
)
def test_parquet_type_of_native_kinds_is_the_arrow_carrier(logical: LogicalType) -> None:
    assert PARQUET_TYPES[logical.kind] == "native"
    assert parquet_type(logical) == to_arrow(logical)


def test_parquet_table_covers_every_kind_but_interval() -> None:
    assert set(PARQUET_TYPES) == ALL_KINDS - {"interval"}


@pytest.mark.parametrize(
    "logical",
    [LogicalType("interval"), LogicalType("list", item=LogicalType("interval", unit="s"))],
    ids=str,
)
def test_parquet_rejects_intervals(logical: LogicalType) -> None:
    with pytest.raises(UnsupportedTypeError, match="Parquet cannot store") as info:
        parquet_type(logical)
    assert info.value.hint is not None
    assert "cast" in info.value.hint


# --------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    ("identifier", "quoted"),
    [
        ("orders", '"orders"'),
        ('a"b', '"a""b"'),
        ('""', '""""""'),
        ('x"; DROP TABLE y; --', '"x""; DROP TABLE y; --"'),
    ],
)
def test_quote_double_doubles_embedded_quotes(identifier: str, quoted: str) -> None:
    assert quote_double(identifier) == quoted


def test_quoted_identifier_is_one_name_in_duckdb() -> None:
    name, column = 'x"; DROP TABLE y; --', 'a"b'
    with duckdb.connect() as con:
        con.execute("CREATE TABLE y (a INTEGER)")
        con.execute(f"CREATE TABLE {quote_double(name)} ({quote_double(column)} INTEGER)")
        tables = {
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        columns = con.execute(f"SELECT * FROM {quote_double(name)}").description
    assert tables == {"y", name}
    assert columns is not None
    assert [c[0] for c in columns] == [column]
