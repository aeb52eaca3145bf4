"""The DuckDB warehouse against a real database file: what its SQL looks like, queries
(with a timeout that interrupts them), statements, and the fingerprint SQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from deltaflow.config.connections import DuckDBConnection, FilesConnection
from deltaflow.connectors import open_warehouse
from deltaflow.connectors.duckdb.warehouse import DuckDBWarehouse
from deltaflow.connectors.protocol import RunResources, Warehouse
from deltaflow.errors import ConfigError

CONN = DuckDBConnection(type="duckdb", path="warehouse.duckdb")


@pytest.fixture
def resources(tmp_path: Path) -> Iterator[RunResources]:
    res = RunResources(tmp_path, "run-1")
    yield res
    res.close()


@pytest.fixture
def warehouse(resources: RunResources) -> Warehouse:
    return open_warehouse(CONN, resources)


def test_the_registry_opens_the_duckdb_warehouse(warehouse: Warehouse) -> None:
    assert isinstance(warehouse, DuckDBWarehouse)
    assert isinstance(warehouse, Warehouse)
    assert (warehouse.kind, warehouse.dialect, warehouse.default_schema) == (
        "duckdb",
        "duckdb",
        "main",
    )


def test_a_connection_that_is_no_warehouse_is_refused_naming_the_choices(
    resources: RunResources,
) -> None:
    files = FilesConnection(type="files")
    with pytest.raises(ConfigError, match="'files' is not a warehouse") as raised:
        open_warehouse(files, resources)
    assert raised.value.code == "CONFIG_NOT_A_WAREHOUSE"
    assert raised.value.hint == "point 'connection' at one of: bigquery, duckdb, postgres"


def test_table_ref_quotes_each_part_so_a_hostile_name_cannot_inject(
    warehouse: Warehouse,
) -> None:
    assert warehouse.table_ref("orders") == '"main"."orders"'
    assert warehouse.table_ref("raw.orders") == '"raw"."orders"'
    hostile = 'x"; DROP TABLE t; --'
    assert warehouse.table_ref(hostile) == '"main"."x""; DROP TABLE t; --"'
    assert warehouse.quote('a"b') == '"a""b"'
    warehouse.execute(f"CREATE TABLE {warehouse.table_ref(hostile)} (id INT)")
    warehouse.execute(f"INSERT INTO {warehouse.table_ref(hostile)} VALUES (7)")
    found = warehouse.query(f"SELECT id FROM {warehouse.table_ref(hostile)}")
    assert found.to_pylist() == [{"id": 7}]


def test_execute_commits_and_query_returns_arrow(
    warehouse: Warehouse, resources: RunResources, tmp_path: Path
) -> None:
    warehouse.execute("CREATE TABLE t (id INT, v VARCHAR)")
    warehouse.execute("INSERT INTO t VALUES (1, 'a'), (2, NULL)")
    table = warehouse.query("SELECT * FROM t ORDER BY id")
    assert isinstance(table, pa.Table)
    assert table.to_pylist() == [{"id": 1, "v": "a"}, {"id": 2, "v": None}]
    resources.close()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:  # committed to the file
        assert con.sql("SELECT count(*) FROM t").fetchall() == [(2,)]


def test_a_query_past_its_timeout_is_interrupted(warehouse: Warehouse) -> None:
    slow = "SELECT count(*) FROM range(100000000000) a WHERE a.range % 7 = 3"
    started = time.monotonic()
    with pytest.raises(duckdb.InterruptException):
        warehouse.query(slow, timeout=0.3)
    assert time.monotonic() - started < 10
    assert warehouse.query("SELECT 1 AS one", timeout=5).to_pylist() == [{"one": 1}]


def test_fingerprint_sql_writes_values_the_same_way_as_postgres(warehouse: Warehouse) -> None:
    warehouse.execute(
        "CREATE TABLE f AS SELECT 334.0::DOUBLE AS x, 'NaN'::DOUBLE AS n, "
        "'-Infinity'::DOUBLE AS i, TIMESTAMPTZ '2024-05-01 12:30:15.5+02' AS ts, "
        "TIMESTAMP '2024-05-01 12:30:15' AS naive, 12 AS k, NULL::VARCHAR AS missing"
    )
    types = {f.name: f.type for f in warehouse.query("SELECT * FROM f LIMIT 0").schema}
    texts = ", ".join(f"{warehouse.text_sql(c, t)} AS {c}" for c, t in types.items())
    row = warehouse.query(f"SELECT {texts} FROM f").to_pylist()[0]
    assert row == {
        "x": "334.000000",
        "n": "NaN",
        "i": "-Infinity",
        "ts": "2024-05-01 10:30:15.500000",
        "naive": "2024-05-01 12:30:15.000000",
        "k": "12",
        "missing": "\\N",
    }
    hash28 = warehouse.hash28_sql("'abc'")
    hashed = warehouse.query(f"SELECT {hash28} AS h").to_pylist()
    assert hashed == [{"h": int("900150983cd24fb0d6963f7d28e17f72"[:7], 16)}]  # md5('abc')
    quotient = warehouse.query(f"SELECT {warehouse.int_div_sql('7', '2')} AS q")
    assert quotient.to_pylist() == [{"q": 3}]
