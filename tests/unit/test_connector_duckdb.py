"""The DuckDB connector against a real database file: prepare, write modes, source."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from deltaflow.config.connections import DuckDBConnection, WriteMode
from deltaflow.config.models import DestinationSpec
from deltaflow.config.sources import SqlSource
from deltaflow.connectors import open_destination, open_source
from deltaflow.connectors.duckdb import STAGING_PREFIX, DuckDBDestination, DuckDBSource, connect
from deltaflow.connectors.protocol import RunResources
from deltaflow.errors import LoadError, SchemaError, SourceError, UnsupportedTypeError
from deltaflow.schema.types import TableSchema

CONN = DuckDBConnection(type="duckdb", path="warehouse.duckdb")


class Boom(RuntimeError):
    pass


@pytest.fixture
def resources(tmp_path: Path) -> Iterator[RunResources]:
    res = RunResources(tmp_path, "run-1")
    yield res
    res.close()


@pytest.fixture
def db(resources: RunResources) -> duckdb.DuckDBPyConnection:
    """The run's shared connection to warehouse.duckdb, as the connectors open it."""
    return connect(CONN, resources)


def dest(resources: RunResources, table: str) -> DuckDBDestination:
    opened = open_destination(CONN, DestinationSpec(connection="wh", table=table), resources)
    assert isinstance(opened, DuckDBDestination)
    return opened


def source(resources: RunResources, batch_size: int = 1000, **spec: Any) -> DuckDBSource:
    opened = open_source(CONN, SqlSource(connection="wh", **spec), resources, batch_size)
    assert isinstance(opened, DuckDBSource)
    return opened


def reader(table: pa.Table, chunk: int = 2) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=chunk))


def failing_reader(table: pa.Table, good_batches: int) -> pa.RecordBatchReader:
    """Yields ``good_batches`` one-row batches of ``table``, then raises Boom."""

    def batches() -> Iterator[pa.RecordBatch]:
        yield from table.to_batches(max_chunksize=1)[:good_batches]
        raise Boom("source died midway")

    return pa.RecordBatchReader.from_batches(table.schema, batches())


def orders(ids: list[int], status: str = "new") -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "status": pa.array([f"{status}-{i}" for i in ids]),
        }
    )


def load(
    target: DuckDBDestination,
    table: pa.Table,
    mode: WriteMode,
    key: tuple[str, ...] = (),
    chunk: int = 2,
) -> Any:
    target.prepare(TableSchema.from_arrow(table.schema))
    return target.load(reader(table, chunk), mode, key)


def rows(db: duckdb.DuckDBPyConnection, table: str, order: str = "1") -> list[tuple[Any, ...]]:
    return db.cursor().execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


def staging_tables(db: duckdb.DuckDBPyConnection) -> list[str]:
    found = db.cursor().execute("SELECT table_name FROM duckdb_tables()").fetchall()
    return [name for (name,) in found if name.startswith(STAGING_PREFIX)]


# --------------------------------------------------------------------------- prepare


def test_prepare_creates_schema_and_table_with_mapped_types(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("amount", pa.decimal128(38, 9)),
            pa.field("placed_at", pa.timestamp("us", tz="UTC")),
            pa.field("day", pa.date32()),
            pa.field(
                "items", pa.list_(pa.struct([pa.field("sku", pa.string()), ("qty", pa.int32())]))
            ),
            pa.field("flags", pa.dictionary(pa.int32(), pa.string())),
        ]
    )
    target = dest(resources, "raw.orders")
    assert target.columns() == {}
    target.prepare(TableSchema.from_arrow(schema))
    assert target.columns() == {
        "id": "BIGINT",
        "amount": "DECIMAL(38,9)",
        "placed_at": "TIMESTAMP WITH TIME ZONE",
        "day": "DATE",
        "items": "STRUCT(sku VARCHAR, qty INTEGER)[]",
        "flags": "VARCHAR",
    }
    (schema_name,) = db.execute(
        "SELECT schema_name FROM duckdb_tables() WHERE table_name = 'orders'"
    ).fetchone() or ("",)
    assert schema_name == "raw"


def test_prepare_adds_new_source_columns_to_an_existing_table(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1, 2]), "append")
    wider = orders([3]).append_column("total", pa.array([Decimal("9.50")], pa.decimal128(10, 2)))
    target.prepare(TableSchema.from_arrow(wider.schema))
    assert target.columns() == {"id": "BIGINT", "status": "VARCHAR", "total": "DECIMAL(10,2)"}
    target.load(reader(wider), "append", ())
    assert rows(db, "raw.orders") == [
        (1, "new-1", None),
        (2, "new-2", None),
        (3, "new-3", Decimal("9.50")),
    ]


def test_prepare_keeps_columns_the_source_no_longer_has(resources: RunResources) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1]), "append")
    target.prepare(TableSchema.from_arrow(pa.schema([pa.field("id", pa.int64())])))
    assert list(target.columns()) == ["id", "status"]


def test_prepare_matches_column_names_case_insensitively(resources: RunResources) -> None:
    # DuckDB names are case-insensitive: "ID" is the existing "id", not a new column.
    target = dest(resources, "raw.orders")
    load(target, orders([1]), "append")
    target.prepare(TableSchema.from_arrow(pa.schema([("ID", pa.int64()), ("Extra", pa.bool_())])))
    assert target.columns() == {"id": "BIGINT", "status": "VARCHAR", "Extra": "BOOLEAN"}


def test_prepare_finds_a_table_named_in_another_case(resources: RunResources) -> None:
    load(dest(resources, "raw.orders"), orders([1]), "append")
    other_case = dest(resources, "RAW.Orders")
    assert list(other_case.columns()) == ["id", "status"]
    result = load(other_case, orders([2]), "append")
    assert result.table_rows == 2


def policy_dest(resources: RunResources, on_schema_change: Any) -> DuckDBDestination:
    spec = DestinationSpec(connection="wh", table="raw.orders", on_schema_change=on_schema_change)
    opened = open_destination(CONN, spec, resources)
    assert isinstance(opened, DuckDBDestination)
    return opened


def test_on_schema_change_fail_refuses_a_new_column_and_leaves_the_table(
    resources: RunResources,
) -> None:
    target = policy_dest(resources, "fail")
    load(target, orders([1]), "append")
    target.prepare(TableSchema.from_arrow(orders([2]).schema))  # the same columns: fine
    wider = orders([2]).append_column("total", pa.array([1.5]))
    with pytest.raises(SchemaError, match=r"column total of raw\.orders is \(missing\) in DuckDB"):
        target.prepare(TableSchema.from_arrow(wider.schema))
    assert target.columns() == {"id": "BIGINT", "status": "VARCHAR"}


def test_on_schema_change_add_columns_adds_columns_but_refuses_a_wider_type(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = policy_dest(resources, "add_columns")
    db.execute("CREATE SCHEMA raw; CREATE TABLE raw.orders (id INTEGER, status VARCHAR)")
    wider = pa.table({"id": pa.array([1], pa.int32()), "Total": [1.5]})
    target.prepare(TableSchema.from_arrow(wider.schema))
    assert target.columns() == {"id": "INTEGER", "status": "VARCHAR", "Total": "DOUBLE"}
    with pytest.raises(SchemaError, match=r"column id of raw\.orders is INTEGER in DuckDB but the"):
        target.prepare(TableSchema.from_arrow(orders([2**40]).schema))
    assert target.columns()["id"] == "INTEGER"


def test_on_schema_change_evolve_widens_a_column_in_place(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    db.execute("CREATE SCHEMA raw; CREATE TABLE raw.orders (id INTEGER, amount DECIMAL(6,2))")
    db.execute("INSERT INTO raw.orders VALUES (1, 1234.56)")
    target = dest(resources, "raw.orders")
    incoming = pa.table(
        {
            "id": pa.array([2**40], pa.int64()),
            "amount": pa.array([Decimal("0.125")], pa.decimal128(4, 3)),
        }
    )
    load(target, incoming, "append")
    assert target.columns() == {"id": "BIGINT", "amount": "DECIMAL(7,3)"}
    assert rows(db, "raw.orders") == [(1, Decimal("1234.560")), (2**40, Decimal("0.125"))]


# --------------------------------------------------------------------------- append / replace


def test_append_adds_rows(resources: RunResources, db: duckdb.DuckDBPyConnection) -> None:
    target = dest(resources, "raw.orders")
    first = load(target, orders([1, 2, 3]), "append")
    second = load(target, orders([4, 5]), "append")
    assert (first.rows_loaded, first.table_rows) == (3, 3)
    assert (second.rows_loaded, second.table_rows) == (2, 5)
    assert [r[0] for r in rows(db, "raw.orders")] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_a_load_inserts_on_one_thread_and_gives_the_threads_back(
    resources: RunResources, db: duckdb.DuckDBPyConnection, mode: WriteMode
) -> None:
    db.execute("SET threads = 3")
    seen: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in orders([1, 2]).to_batches(max_chunksize=1):
            seen.append(int(db.cursor().execute("SELECT current_setting('threads')").fetchone()[0]))
            yield batch

    target = dest(resources, "raw.orders")
    target.prepare(TableSchema.from_arrow(orders([1]).schema))
    target.load(pa.RecordBatchReader.from_batches(orders([1]).schema, batches()), mode, ("id",))

    assert seen == [1, 1]
    assert db.execute("SELECT current_setting('threads')").fetchone() == (3,)


def test_append_by_name_tolerates_column_order(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1]), "append")
    swapped = orders([2]).select(["status", "id"])
    target.load(reader(swapped), "append", ())
    assert rows(db, "raw.orders") == [(1, "new-1"), (2, "new-2")]


def test_replace_swaps_the_table_new_schema_wins(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1, 2, 3]), "append")
    new = pa.table({"sku": pa.array(["a", "b"]), "qty": pa.array([1, 2], pa.int16())})
    result = target.load(reader(new), "replace", ())
    assert (result.rows_loaded, result.table_rows) == (2, 2)
    assert target.columns() == {"sku": "VARCHAR", "qty": "SMALLINT"}
    assert rows(db, "raw.orders") == [("a", 1), ("b", 2)]
    assert staging_tables(db) == []


def test_replace_with_no_rows_empties_the_table(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1, 2]), "append")
    result = load(target, orders([]), "replace")
    assert (result.rows_loaded, result.table_rows) == (0, 0)
    assert list(target.columns()) == ["id", "status"]


def test_replace_creates_a_missing_table_and_schema(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "fresh.orders")
    result = target.load(reader(orders([1, 2])), "replace", ())
    assert result.table_rows == 2
    assert rows(db, "fresh.orders") == [(1, "new-1"), (2, "new-2")]


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_decimals_wider_than_duckdb_are_kept_as_exact_text(
    resources: RunResources, db: duckdb.DuckDBPyConnection, mode: WriteMode
) -> None:
    wide = Decimal("1234567890123456789012345678901234567890.0123456789")
    item = pa.struct([pa.field("amount", pa.decimal256(50, 10))])
    data = pa.table(
        {
            "amount": pa.array([wide, None], pa.decimal256(50, 10)),
            "items": pa.array([[{"amount": Decimal("1.5")}], None], pa.list_(item)),
        }
    )
    target = dest(resources, "raw.ledger")
    target.prepare(TableSchema.from_arrow(data.schema))
    assert target.load(reader(data), mode, ()).table_rows == 2
    assert target.columns() == {"amount": "VARCHAR", "items": "STRUCT(amount VARCHAR)[]"}
    assert rows(db, "raw.ledger") == [(str(wide), [{"amount": "1.5000000000"}]), (None, None)]


# --------------------------------------------------------------------------- merge


def test_merge_upserts_on_the_primary_key(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1, 2, 3]), "append")
    result = load(target, orders([2, 3, 4, 5], status="upd"), "merge", ("id",))
    assert result.rows_loaded == 4
    assert result.table_rows == 5
    assert result.details == {"inserted": 2, "updated": 2, "duplicates_in_batch": 0}
    assert rows(db, "raw.orders") == [
        (1, "new-1"),
        (2, "upd-2"),
        (3, "upd-3"),
        (4, "upd-4"),
        (5, "upd-5"),
    ]
    assert staging_tables(db) == []


def test_merge_keeps_the_last_row_when_a_key_repeats_in_one_load(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1]), "append")
    repeated = pa.table(
        {
            "id": pa.array([1, 2, 1, 2, 1, 3], pa.int64()),
            "status": ["a", "b", "c", "d", "e", "f"],
        }
    )
    # One-row batches: the repeats of a key are spread over several batches.
    result = load(target, repeated, "merge", ("id",), chunk=1)
    assert result.details == {"inserted": 2, "updated": 1, "duplicates_in_batch": 3}
    assert result.rows_loaded == 6
    assert rows(db, "raw.orders") == [(1, "e"), (2, "d"), (3, "f")]


def test_merge_on_a_composite_key(resources: RunResources, db: duckdb.DuckDBPyConnection) -> None:
    def lines(data: list[tuple[int, str, int]]) -> pa.Table:
        order, line, qty = zip(*data, strict=True)
        return pa.table(
            {
                "order_id": pa.array(order, pa.int64()),
                "line": pa.array(line),
                "qty": pa.array(qty, pa.int32()),
            }
        )

    target = dest(resources, "raw.lines")
    load(target, lines([(1, "a", 1), (1, "b", 1), (2, "a", 1)]), "append")
    result = load(
        target, lines([(1, "b", 5), (2, "b", 7), (3, "a", 9)]), "merge", ("order_id", "line")
    )
    assert result.details == {"inserted": 2, "updated": 1, "duplicates_in_batch": 0}
    assert rows(db, "raw.lines", "1, 2") == [
        (1, "a", 1),
        (1, "b", 5),
        (2, "a", 1),
        (2, "b", 7),
        (3, "a", 9),
    ]


def test_merge_with_a_null_key_fails_and_leaves_the_table_unchanged(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1, 2]), "append")
    before = rows(db, "raw.orders")
    bad = pa.table({"id": pa.array([2, None, 3], pa.int64()), "status": ["x", "y", "z"]})
    with pytest.raises(LoadError, match="NULL in the primary key") as info:
        load(target, bad, "merge", ("id",))
    assert info.value.code == "LOAD_NULL_PRIMARY_KEY"
    assert rows(db, "raw.orders") == before
    assert staging_tables(db) == []


def test_merge_with_a_null_in_one_part_of_a_composite_key_fails(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.pairs")
    load(target, pa.table({"a": [1], "b": ["x"], "v": [0]}), "append")
    bad = pa.table({"a": [1, 2], "b": ["x", None], "v": [1, 2]})
    with pytest.raises(LoadError) as info:
        load(target, bad, "merge", ("a", "b"))
    assert info.value.code == "LOAD_NULL_PRIMARY_KEY"
    assert rows(db, "raw.pairs") == [(1, "x", 0)]


def test_merge_without_a_primary_key_is_refused(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1]), "append")
    with pytest.raises(LoadError, match="needs a primary key"):
        load(target, orders([1]), "merge", ())
    assert rows(db, "raw.orders") == [(1, "new-1")]


def test_merge_counts_keys_not_rows_when_the_table_repeats_a_key(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    # Two earlier appends left key 1 twice; merging key 1 updates one key, inserts none.
    target = dest(resources, "raw.orders")
    load(target, orders([1]), "append")
    load(target, orders([1]), "append")
    result = load(target, orders([1], status="upd"), "merge", ("id",))
    assert result.details == {"inserted": 0, "updated": 1, "duplicates_in_batch": 0}
    assert rows(db, "raw.orders") == [(1, "upd-1")]


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("mode", "key"), [("append", ()), ("replace", ()), ("merge", ("id",))], ids=str
)
def test_a_load_that_fails_midway_leaves_the_table_unchanged(
    resources: RunResources, db: duckdb.DuckDBPyConnection, mode: WriteMode, key: tuple[str, ...]
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1, 2, 3]), "append")
    before = rows(db, "raw.orders")
    with pytest.raises(Boom, match="source died midway"):  # the source's error, not DuckDB's
        target.load(failing_reader(orders(list(range(2, 12)), "upd"), 5), mode, key)
    assert rows(db, "raw.orders") == before
    assert list(target.columns()) == ["id", "status"]
    assert staging_tables(db) == []
    # The connection is usable afterwards: no transaction was left open.
    assert load(target, orders([9]), "append").table_rows == 4


def test_a_type_error_is_a_load_error_and_rolls_back(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.orders")
    load(target, orders([1]), "append")
    bad = pa.table({"id": pa.array(["2", "not a number"]), "status": ["a", "b"]})
    with pytest.raises(LoadError, match=r"raw\.orders") as info:
        target.load(reader(bad, chunk=1), "append", ())
    assert info.value.code == "LOAD_FAILED"
    assert rows(db, "raw.orders") == [(1, "new-1")]


# --------------------------------------------------------------------------- atomic replace


def test_replace_is_atomic_for_concurrent_readers(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    sizes = [1, 3000, 17, 20_000, 250, 0, 5_000]
    target = dest(resources, "raw.orders")
    load(target, orders(list(range(sizes[0]))), "append")
    counts: dict[int, int] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_in_a_loop() -> None:
        cursor = db.cursor()  # another cursor of the same connection, on another thread
        while not stop.is_set():
            try:
                row = cursor.execute('SELECT count(*) FROM "raw"."orders"').fetchone()
            except Exception as exc:  # a missing table would surface here
                errors.append(exc)
                continue
            assert row is not None
            counts[row[0]] = counts.get(row[0], 0) + 1

    reader_thread = threading.Thread(target=read_in_a_loop)
    reader_thread.start()
    try:
        for i in range(40):
            size = sizes[(i + 1) % len(sizes)]
            result = target.load(reader(orders(list(range(size))), chunk=1000), "replace", ())
            assert result.table_rows == size
    finally:
        stop.set()
        reader_thread.join()
    assert errors == []
    assert set(counts) <= set(sizes), f"saw partial tables: {set(counts) - set(sizes)}"
    assert sum(counts.values()) > 40  # the reader really ran alongside the replaces
    assert staging_tables(db) == []


# --------------------------------------------------------------------------- identifiers


def test_identifiers_cannot_inject_sql(
    resources: RunResources, db: duckdb.DuckDBPyConnection
) -> None:
    db.execute("CREATE TABLE y (keep INTEGER)")
    db.execute("INSERT INTO y VALUES (42)")
    name = 'x"; DROP TABLE y; --'
    target = dest(resources, name)
    data = pa.table({'a"b': pa.array([1, 2], pa.int64()), "v": ["p", "q"]})
    assert load(target, data, "append").table_rows == 2
    merged = load(
        target, pa.table({'a"b': pa.array([2, 3], pa.int64()), "v": ["Q", "r"]}), "merge", ('a"b',)
    )
    assert merged.details == {"inserted": 1, "updated": 1, "duplicates_in_batch": 0}
    assert load(target, data, "replace").table_rows == 2
    assert list(target.columns()) == ['a"b', "v"]

    read = source(resources, table=name, columns=['a"b'])
    assert read.discover().names == ['a"b']
    assert pa.Table.from_batches(list(read.read(read.splits()[0])))['a"b'].to_pylist() == [1, 2]
    assert db.execute("SELECT keep FROM y").fetchall() == [(42,)]


# --------------------------------------------------------------------------- source


@pytest.fixture
def shop(db: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    db.execute(
        """
        CREATE SCHEMA shop;
        CREATE TABLE shop.lines (
            order_id BIGINT, line VARCHAR, qty INTEGER, PRIMARY KEY (order_id, line));
        INSERT INTO shop.lines SELECT i // 3, 'l' || (i % 3), i FROM range(3000) t(i);
        CREATE TABLE shop.notes (note VARCHAR);
        """
    )
    return db


def read_all(src: DuckDBSource) -> pa.Table:
    batches = [b for split in src.splits() for b in src.read(split)]
    return pa.Table.from_batches(batches, src.discover().to_arrow())


def test_source_reads_a_table_in_batches(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    src = source(resources, batch_size=500, table="shop.lines")
    assert src.name == "lines"
    schema = src.discover()
    assert schema.names == ["order_id", "line", "qty"]
    assert schema.primary_key == ("order_id", "line")
    batches = list(src.read(src.splits()[0]))
    assert all(b.num_rows <= 500 for b in batches)
    assert sum(b.num_rows for b in batches) == 3000
    assert sorted(pa.Table.from_batches(batches)["qty"].to_pylist()) == list(range(3000))


def test_source_reads_a_query_without_a_key(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    src = source(
        resources,
        query="SELECT order_id, sum(qty)::BIGINT AS total FROM shop.lines GROUP BY order_id",
        stream="totals",
    )
    assert src.name == "totals"
    schema = src.discover()
    assert schema.names == ["order_id", "total"]
    assert schema.primary_key == ()
    table = read_all(src).sort_by("order_id")
    assert table.num_rows == 1000
    assert table["total"][0].as_py() == 0 + 1 + 2


@pytest.mark.parametrize(
    "query",
    [
        "SELECT order_id FROM shop.lines WHERE qty < 3;",
        "SELECT order_id FROM shop.lines WHERE qty < 3 ; \n",
        "SELECT order_id FROM shop.lines WHERE qty < 3 -- the first order",
    ],
)
def test_source_query_may_end_in_a_semicolon_or_a_comment(
    resources: RunResources, shop: duckdb.DuckDBPyConnection, query: str
) -> None:
    src = source(resources, query=query)
    assert src.discover().names == ["order_id"]
    assert read_all(src)["order_id"].to_pylist() == [0, 0, 0]


def test_source_error_while_streaming_is_a_source_error(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    # The bad value comes late: execute() succeeds, a later batch fails to convert.
    query = (
        "SELECT (CASE WHEN i < 500000 THEN '1' ELSE 'x' END)::INTEGER AS v FROM range(1000000) t(i)"
    )
    src = source(resources, batch_size=1000, query=query)
    src.discover()
    with pytest.raises(SourceError, match="Could not convert string 'x'"):
        list(src.read(src.splits()[0]))


def test_source_columns_and_where(resources: RunResources, shop: duckdb.DuckDBPyConnection) -> None:
    src = source(resources, table="shop.lines", columns=["qty", "order_id"], where="qty < 10")
    assert src.discover().names == ["qty", "order_id"]
    table = read_all(src).sort_by("qty")
    assert table.column_names == ["qty", "order_id"]
    assert table["qty"].to_pylist() == list(range(10))


def test_source_drops_a_key_that_columns_leave_incomplete(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    assert (
        source(resources, table="shop.lines", columns=["order_id", "qty"]).discover().primary_key
        == ()
    )
    kept = source(resources, table="shop.lines", columns=["line", "order_id"]).discover()
    assert kept.primary_key == ("order_id", "line")
    # DuckDB names are case-insensitive: the key is found however the config spells them.
    upper = source(resources, table="SHOP.LINES", columns=["LINE", "ORDER_ID"]).discover()
    assert upper.names == ["line", "order_id"]
    assert upper.primary_key == ("order_id", "line")


def test_source_table_without_a_primary_key(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    assert source(resources, table="shop.notes").discover().primary_key == ()


def test_source_errors_name_the_problem(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    with pytest.raises(SourceError, match="nope"):
        source(resources, table="shop.nope").discover()
    with pytest.raises(SourceError, match="missing_column"):
        source(resources, table="shop.lines", columns=["missing_column"]).discover()


def test_source_and_destination_share_one_database(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    target = dest(resources, "raw.copy")
    src = source(resources, table="shop.lines")
    assert src.db is target.db
    schema = src.discover()
    target.prepare(schema)
    batches = (b for split in src.splits() for b in src.read(split))
    result = target.load(
        pa.RecordBatchReader.from_batches(schema.to_arrow(), batches), "merge", schema.primary_key
    )
    assert (result.rows_loaded, result.table_rows) == (3000, 3000)


def test_every_logical_type_survives_a_load_and_a_read(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    struct = pa.struct([pa.field("sku", pa.string()), pa.field("qty", pa.int32())])
    data = pa.table(
        {
            "b": pa.array([True, None]),
            "i8": pa.array([-1, None], pa.int8()),
            "u64": pa.array([2**64 - 1, None], pa.uint64()),
            "f32": pa.array([1.5, None], pa.float32()),
            "dec": pa.array(
                [Decimal("-12345678901234567890.123456789"), None], pa.decimal128(38, 9)
            ),
            "s": pa.array(["é", None]),
            "bin": pa.array([b"\x00\xff", None]),
            "d": pa.array([dt.date(2024, 2, 29), None]),
            "t": pa.array([dt.time(23, 59, 59, 999999), None], pa.time64("us")),
            "tns": pa.array([86_399_999_999_999, None], pa.time64("ns")),
            "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None], pa.timestamp("us")),
            "tsns": pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns")),
            "tsz": pa.array([1_700_000_000_000_000, None], pa.timestamp("us", tz="UTC")),
            "iv": pa.array([(1, 2, 3_000), None], pa.month_day_nano_interval()),
            "items": pa.array([[{"sku": "a", "qty": 1}, None], None], pa.list_(struct)),
        }
    )
    target = dest(resources, "raw.types")
    assert load(target, data, "append").table_rows == 2
    back = read_all(source(resources, table="raw.types"))
    wanted = TableSchema.from_arrow(data.schema).columns
    for want, got in zip(wanted, TableSchema.from_arrow(back.schema).columns, strict=True):
        assert got.name == want.name
        if want.name == "tsz":  # DuckDB hands TIMESTAMPTZ back in its session time zone
            assert got.type.tz is not None
            assert got.type.unit == "us"
        else:
            assert got.type == want.type, want.name
    for name in data.column_names:
        assert back[name].cast(data[name].type).equals(data[name]), name


def test_a_missing_table_is_not_looked_up_among_python_variables(
    resources: RunResources, shop: duckdb.DuckDBPyConnection
) -> None:
    # 'qualified' is a function in the connector module; DuckDB's replacement scans would
    # find it and fail with "Python Object ... not suitable" instead of a missing table.
    with pytest.raises(SourceError, match="qualified does not exist"):
        source(resources, table="qualified").discover()


def test_a_query_source_applies_columns_and_where(tmp_path: Path) -> None:
    resources = RunResources(tmp_path, "run-1")
    db = connect(CONN, resources)
    db.execute("CREATE TABLE t AS SELECT range AS id, range * 2 AS v FROM range(5)")
    src = source(resources, query="SELECT * FROM t", columns=["v"], where="id > 2")
    assert src.discover().names == ["v"]
    assert [r for b in src.read(src.splits()[0]) for r in b.to_pylist()] == [{"v": 6}, {"v": 8}]


@pytest.mark.parametrize("dtype", ["UHUGEINT", "TIMETZ", "BIT", "VARINT", "UHUGEINT[]"])
def test_types_duckdb_cannot_export_intact_are_refused(tmp_path: Path, dtype: str) -> None:
    resources = RunResources(tmp_path, "run-1")
    connect(CONN, resources).execute(f"CREATE TABLE t (id INT, x {dtype})")
    with pytest.raises(UnsupportedTypeError, match="column x of stream 't' is DuckDB") as info:
        source(resources, table="t").discover()
    assert info.value.hint == "read it with a query that casts it, e.g. x::VARCHAR"
