"""What the PostgreSQL and BigQuery warehouses say about their SQL, without a server:
opening one connects to nothing."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from deltaflow.config.connections import BigQueryConnection, PostgresConnection
from deltaflow.connectors import open_warehouse
from deltaflow.connectors.protocol import RunResources, Warehouse
from deltaflow.errors import ConfigError


def test_postgres_names_tables_in_public_and_divides_integers_with_a_slash(
    tmp_path: Path,
) -> None:
    pg = open_warehouse(PostgresConnection(type="postgres"), RunResources(tmp_path, "r"))
    assert isinstance(pg, Warehouse)
    assert (pg.kind, pg.dialect, pg.default_schema) == ("postgres", "postgres", "public")
    assert pg.table_ref('o"rders') == '"public"."o""rders"'
    assert pg.int_div_sql("a", "2") == "(a / 2)"
    assert pg.text_sql("x", pa.float64()).startswith("coalesce(CASE WHEN \"x\" IN ('NaN'")


def test_bigquery_names_tables_in_the_dataset_and_refuses_fingerprints(tmp_path: Path) -> None:
    conn = BigQueryConnection(type="bigquery", project="p", dataset="sales")
    bq = open_warehouse(conn, RunResources(tmp_path, "r"))
    assert isinstance(bq, Warehouse)
    assert (bq.kind, bq.dialect, bq.default_schema) == ("bigquery", "bigquery", "sales")
    assert bq.table_ref("orders") == "`sales`.`orders`"
    assert bq.table_ref("raw.o`rders") == "`raw`.`o\\`rders`"
    assert bq.int_div_sql("a", "2") == "DIV(a, 2)"
    with pytest.raises(ConfigError, match="reconcile does not support BigQuery yet") as raised:
        bq.hash28_sql("'x'")
    assert "DuckDB or PostgreSQL" in (raised.value.hint or "")
    with pytest.raises(ConfigError):
        bq.text_sql("x", pa.int64())
