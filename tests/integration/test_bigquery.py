"""BigQuery destination against the BigQuery emulator (see tests/support/bigquery.py)."""

from __future__ import annotations

import datetime as dt
import logging
import textwrap
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
from deltaflow.orchestration.runner import RunResult
from tests.support.bigquery import BigQueryEmulator


def run(
    tmp_path: Path,
    emulator: BigQueryEmulator,
    dataset: str,
    steps: str,
    extra_connections: str = "",
) -> RunResult:
    path = pipeline_file(tmp_path, emulator, dataset, steps, extra_connections)
    return run_pipeline(
        load_pipeline(path), context=RunContext(), store=RunStore(tmp_path / "runs.db")
    )


def pipeline_file(
    tmp_path: Path,
    emulator: BigQueryEmulator,
    dataset: str,
    steps: str,
    extra_connections: str = "",
) -> Path:
    path = tmp_path / "pipeline.yml"
    path.write_text(
        textwrap.dedent(f"""\
        pipeline_id: bq
        connections:
          files: {{type: files}}
          wh: {{type: duckdb, path: wh.duckdb}}
          bq: {{type: bigquery, project: {emulator.project}, dataset: {dataset},
                credentials: anonymous, api_endpoint: "{emulator.endpoint}",
                storage_endpoint: "127.0.0.1:{emulator.grpc_port}", timeout: 60}}
        """)
        + extra_connections
        + "steps:\n"
        + textwrap.indent(textwrap.dedent(steps), "  ")
    )
    return path


def rows(emulator: BigQueryEmulator, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in emulator.client().query(sql, timeout=30).result(timeout=60)]


def step(mode: str, extra: str = "", path: str = "orders.csv") -> str:
    return f"""\
        - step_id: orders
          type: sync
          source: {{connection: files, path: {path}}}
          destination: {{connection: bq, table: orders, write_mode: {mode}{extra}}}
        """


def test_append_then_replace(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    (tmp_path / "orders.csv").write_text("id,status\n1,new\n2,new\n")
    table = f"`{bigquery_emulator.project}.{bq_dataset}.orders`"

    first = run(tmp_path, bigquery_emulator, bq_dataset, step("append"))
    second = run(tmp_path, bigquery_emulator, bq_dataset, step("append"))
    assert first.ok, first.error
    assert second.ok, second.error
    assert rows(bigquery_emulator, f"SELECT count(*) FROM {table}") == [(4,)]
    assert second.steps[0].details["load_jobs"] == 1

    replaced = run(tmp_path, bigquery_emulator, bq_dataset, step("replace"))
    assert replaced.ok, replaced.error
    assert rows(bigquery_emulator, f"SELECT id, status FROM {table} ORDER BY id") == [
        (1, "new"),
        (2, "new"),
    ]
    assert replaced.steps[0].table_rows == 2


def test_merge_is_idempotent_and_the_last_row_of_a_key_wins(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    (tmp_path / "orders.csv").write_text("id,status\n1,new\n2,new\n2,paid\n3,new\n")
    table = f"`{bigquery_emulator.project}.{bq_dataset}.orders`"
    merge = step("merge", ", primary_key: [id]")

    first = run(tmp_path, bigquery_emulator, bq_dataset, merge)
    second = run(tmp_path, bigquery_emulator, bq_dataset, merge)

    assert first.ok, first.error
    assert second.ok, second.error
    assert rows(bigquery_emulator, f"SELECT id, status FROM {table} ORDER BY id") == [
        (1, "new"),
        (2, "paid"),
        (3, "new"),
    ]
    assert second.steps[0].details["query_jobs"] >= 1


def test_partitioned_and_clustered_table_from_config(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    at = [dt.datetime(2024, 1, day, 10, 0, 0, 123456, tzinfo=dt.UTC) for day in (1, 2)]
    pq.write_table(
        pa.table({"id": [1, 2], "user": ["a", "b"], "at": pa.array(at, pa.timestamp("us", "UTC"))}),
        tmp_path / "events.parquet",
    )
    result = run(
        tmp_path,
        bigquery_emulator,
        bq_dataset,
        """\
        - step_id: events
          type: sync
          source: {connection: files, path: events.parquet}
          destination: {connection: bq, table: events, partition_by: {field: at,
                        expiration_days: 30}, cluster_by: [user, id]}
        """,
    )

    assert result.ok, result.error
    table = bigquery_emulator.client().get_table(f"{bigquery_emulator.project}.{bq_dataset}.events")
    assert table.time_partitioning.field == "at"
    assert table.clustering_fields == ["user", "id"]
    assert table.num_rows == 2
    assert rows(
        bigquery_emulator,
        f"SELECT at FROM `{table.project}.{bq_dataset}.events` WHERE id = 1",
    ) == [(at[0],)]  # microseconds kept


def test_cluster_by_an_unknown_column_names_it(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    (tmp_path / "orders.csv").write_text("id,status\n1,new\n")
    result = run(tmp_path, bigquery_emulator, bq_dataset, step("append", ", cluster_by: [stauts]"))
    assert not result.ok
    assert "cluster_by names stauts, not a column of" in str(result.error)


def test_new_source_columns_are_added(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    (tmp_path / "orders.csv").write_text("id,status\n1,new\n")
    assert run(tmp_path, bigquery_emulator, bq_dataset, step("append")).ok
    (tmp_path / "orders.csv").write_text("id,status,amount\n2,paid,9.5\n")
    result = run(tmp_path, bigquery_emulator, bq_dataset, step("append"))
    assert result.ok, result.error
    table = f"`{bigquery_emulator.project}.{bq_dataset}.orders`"
    assert rows(bigquery_emulator, f"SELECT id, amount FROM {table} ORDER BY id") == [
        (1, None),
        (2, 9.5),
    ]


def test_a_bad_key_file_is_a_connection_error_that_shows_no_key(tmp_path: Path) -> None:
    (tmp_path / "key.json").write_text('{"type": "service_account", "private_key": "SECRET-XYZ"}')
    (tmp_path / "orders.csv").write_text("id\n1\n")
    path = tmp_path / "pipeline.yml"
    path.write_text(
        textwrap.dedent("""\
        pipeline_id: bq
        connections:
          files: {type: files}
          bq: {type: bigquery, project: p, dataset: d, key_file: key.json}
        steps:
          - step_id: orders
            type: sync
            source: {connection: files, path: orders.csv}
            destination: {connection: bq, table: orders}
        """)
    )
    result = run_pipeline(
        load_pipeline(path), context=RunContext(), store=RunStore(tmp_path / "runs.db")
    )
    assert not result.ok
    assert result.error is not None
    assert result.error.code == "CONNECTION_FAILED"
    assert "key.json" in str(result.error)
    assert "SECRET-XYZ" not in str(result.error)


def test_a_table_and_a_query_read_back_over_the_storage_api(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    import duckdb

    at = dt.datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    pq.write_table(
        pa.table(
            {
                "id": pa.array(range(1, 1001), pa.int64()),
                "amount": pa.array([Decimal(i) / 100 for i in range(1000)], pa.decimal128(12, 2)),
                "at": pa.array([at] * 1000, pa.timestamp("us", "UTC")),
                "tags": pa.array([["a", str(i)] for i in range(1000)], pa.list_(pa.string())),
            }
        ),
        tmp_path / "orders.parquet",
    )
    assert run(tmp_path, bigquery_emulator, bq_dataset, step("append", path="orders.parquet")).ok

    def read_back(source: str) -> list[tuple[object, ...]]:
        steps = f"""\
            - step_id: back
              type: sync
              source: {{connection: bq, {source}}}
              destination: {{connection: wh, table: raw.back, write_mode: replace}}
            """
        result = run(tmp_path, bigquery_emulator, bq_dataset, steps)
        assert result.ok, result.error
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as db:
            found = db.execute("SELECT count(*), max(amount) FROM raw.back").fetchall()
        assert result.steps[0].rows_read == found[0][0]
        return found

    assert read_back("table: orders") == [(1000, Decimal("9.99"))]
    assert read_back("table: orders, columns: [id, amount, tags], where: 'id > 990'") == [
        (10, Decimal("9.99"))
    ]
    query = f"SELECT id, amount, at FROM `{bq_dataset}.orders` WHERE id <= 10"
    assert read_back(f'query: "{query}"') == [(10, Decimal("0.09"))]
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as db:
        micros = db.execute('SELECT DISTINCT epoch_us("at") FROM raw.back').fetchall()
    assert micros == [(int(at.timestamp()) * 1_000_000 + at.microsecond,)]  # microseconds kept


def test_bigquery_to_postgres_nested_as_jsonb_with_a_gin_index(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str, pg_dsn: str
) -> None:
    import psycopg

    pq.write_table(
        pa.table(
            {
                "id": pa.array([1, 2], pa.int64()),
                "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
                "address": pa.array(
                    [{"city": "Köln", "zip": "50667"}, None],
                    pa.struct([("city", pa.string()), ("zip", pa.string())]),
                ),
            }
        ),
        tmp_path / "people.parquet",
    )
    assert run(tmp_path, bigquery_emulator, bq_dataset, step("append", path="people.parquet")).ok
    steps = """\
        - step_id: to_pg
          type: sync
          source: {connection: bq, table: orders}
          destination: {connection: pg, table: public.people, write_mode: merge,
                        primary_key: [id], indexes: [{columns: [address], using: gin}]}
        """
    result = run(
        tmp_path,
        bigquery_emulator,
        bq_dataset,
        steps,
        extra_connections=f'  pg: {{type: postgres, dsn: "{pg_dsn}"}}\n',
    )
    assert result.ok, result.error

    with psycopg.connect(pg_dsn) as con:
        stored = con.execute("SELECT id, tags, address FROM public.people ORDER BY id").fetchall()
        types = dict(
            con.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'public.people'::regclass AND attnum > 0"
            ).fetchall()
        )
        indexes = con.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'people'"
        ).fetchall()
    assert stored == [(1, ["a", "b"], {"city": "Köln", "zip": "50667"}), (2, [], None)]
    assert types["tags"] == "jsonb"
    assert types["address"] == "jsonb"
    assert any("USING gin (address)" in d for (d,) in indexes)


def test_invalid_column_names_are_renamed_and_the_renaming_recorded(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    (tmp_path / "orders.csv").write_text(
        "order id,order date,1st\n1,2024-01-01,a\n1,2024-01-02,b\n"
    )
    merge = step("merge", ", primary_key: ['order id'], cluster_by: ['order date']")

    result = run(tmp_path, bigquery_emulator, bq_dataset, merge)

    assert result.ok, result.error
    assert result.steps[0].details["renamed_columns"] == {
        "order id": "order_id",
        "order date": "order_date",
        "1st": "c_1st",
    }
    table = f"`{bigquery_emulator.project}.{bq_dataset}.orders`"
    assert rows(bigquery_emulator, f"SELECT order_id, c_1st FROM {table}") == [(1, "b")]
    stored = bigquery_emulator.client().get_table(table.strip("`"))
    assert stored.clustering_fields == ["order_date"]


def pg_sql(dsn: str, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        cursor = con.execute(statement)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def pg_steps(source: str, destination: str) -> str:
    return textwrap.dedent(f"""\
        - step_id: s
          type: sync
          source: {source}
          destination: {destination}
        """)


def pg_connection(dsn: str) -> str:
    return f'  pg: {{type: postgres, dsn: "{dsn}"}}\n'


def test_schema_change_on_a_partitioned_table_keeps_it_in_place(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str, pg_dsn: str
) -> None:
    pg_sql(
        pg_dsn,
        "CREATE TABLE ev (id int PRIMARY KEY, day date NOT NULL, qty int NOT NULL);"
        "INSERT INTO ev VALUES (1, '2024-01-01', 5)",
    )
    steps = pg_steps(
        "{connection: pg, table: ev}",
        "{connection: bq, table: ev, write_mode: merge, primary_key: [id], "
        "partition_by: {field: day}, cluster_by: [id]}",
    )
    assert run(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn)).ok
    client = bigquery_emulator.client()
    table_id = f"{bigquery_emulator.project}.{bq_dataset}.ev"
    before = client.get_table(table_id)
    assert {f.name: f.mode for f in before.schema} == {
        "id": "REQUIRED",
        "day": "REQUIRED",
        "qty": "REQUIRED",
    }

    # The source grows a column, qty becomes nullable and wider, and a NULL arrives.
    pg_sql(
        pg_dsn,
        "ALTER TABLE ev ADD COLUMN note text; ALTER TABLE ev ALTER COLUMN qty DROP NOT NULL;"
        "ALTER TABLE ev ALTER COLUMN qty TYPE numeric(30, 2);"
        "INSERT INTO ev VALUES (2, '2024-01-02', NULL, 'late'), (3, '2024-01-02', 1.25, NULL)",
    )
    result = run(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn))

    assert result.ok, result.error
    after = client.get_table(table_id)
    assert after.created == before.created  # altered in place, not recreated
    assert after.time_partitioning.field == "day"
    assert after.clustering_fields == ["id"]
    fields = {f.name: f for f in after.schema}
    assert fields["qty"].mode == "NULLABLE"
    # INT64 widened for numeric(30,2): to BIGNUMERIC, which the emulator reports as NUMERIC
    assert fields["qty"].field_type in ("BIGNUMERIC", "NUMERIC")
    assert fields["note"].mode == "NULLABLE"
    assert fields["id"].mode == "REQUIRED"
    stored = rows(bigquery_emulator, f"SELECT id, qty, note FROM `{table_id}` ORDER BY id")
    assert stored == [(1, Decimal(5), None), (2, None, "late"), (3, Decimal("1.25"), None)]


def test_a_narrowing_change_is_refused_with_the_column_and_both_types(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str, pg_dsn: str
) -> None:
    pg_sql(pg_dsn, "CREATE TABLE ev (id int, v double precision); INSERT INTO ev VALUES (1, 1)")
    steps = pg_steps("{connection: pg, table: ev}", "{connection: bq, table: ev}")
    assert run(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn)).ok
    pg_sql(pg_dsn, "ALTER TABLE ev ALTER COLUMN v TYPE bigint")

    result = run(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn))

    assert not result.ok
    assert "column v of" in str(result.error)
    assert "FLOAT64 in BigQuery but the source needs INT64" in str(result.error)
    assert "on_schema_change" in str(result.error)


def test_a_refused_change_leaves_the_table_as_it_was(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str, pg_dsn: str
) -> None:
    pg_sql(pg_dsn, "CREATE TABLE ev (id int, v double precision); INSERT INTO ev VALUES (1, 1)")
    steps = pg_steps("{connection: pg, table: ev}", "{connection: bq, table: ev}")
    assert run(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn)).ok
    # The source gains a column before one that narrows: note would be added, v is refused.
    pg_sql(
        pg_dsn,
        "ALTER TABLE ev ADD COLUMN note text; ALTER TABLE ev DROP COLUMN v; "
        "ALTER TABLE ev ADD COLUMN v bigint",
    )

    result = run(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn))

    assert not result.ok
    assert "column v of" in str(result.error)
    table_id = f"{bigquery_emulator.project}.{bq_dataset}.ev"
    fields = bigquery_emulator.client().get_table(table_id).schema
    assert [(f.name, f.field_type) for f in fields] == [("id", "INTEGER"), ("v", "FLOAT")]


# BIGNUMERIC beyond 38 digits (numeric(40,10), unconstrained numeric) is left out: the
# emulator stores decimals in DuckDB, which holds 38 digits; tests/unit/test_bigquery_types.py
# covers the conversion to BIGNUMERIC.
ROUND_TRIP_TYPES = """
    id bigint PRIMARY KEY, i2 smallint, i4 integer, f8 double precision, f4 real,
    n numeric(12,2), big numeric(38,10), b boolean, t text, vc varchar(20),
    u uuid, raw bytea, d date, tm time, ts timestamp, tz timestamptz, js jsonb,
    ints bigint[], texts text[]
"""
ROUND_TRIP_ROWS = """
    (1, -32768, 2147483647, 'NaN', 1.5, 12.30, 1234567890123456789012345678.0123456789, true,
     'ünïcødé ✓', 'x',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff00', '0001-01-01', '23:59:59.999999',
     '2024-02-29 12:34:56.789012', '2024-03-01 00:00:00.000001+05', '{"a": [1, {"b": null}]}',
     '{1,2,3}', '{"", "quote\\"d"}'),
    (2, NULL, NULL, 'Infinity', '-Infinity', NULL, -0.5, false, '', NULL, NULL, '',
     '9999-12-31', '00:00:00', NULL, NULL, 'null', '{}', NULL),
    (3, 0, 0, '-Infinity', 0, -0.01, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '{}', NULL, '{}')
"""


def test_every_type_round_trips_postgres_bigquery_postgres(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str, pg_dsn: str
) -> None:
    pg_sql(
        pg_dsn, f"CREATE TABLE src ({ROUND_TRIP_TYPES}); INSERT INTO src VALUES {ROUND_TRIP_ROWS}"
    )
    steps = pg_steps("{connection: pg, table: src}", "{connection: bq, table: src}") + pg_steps(
        "{connection: bq, table: src}",
        "{connection: pg, table: public.back, write_mode: merge, primary_key: [id], nested: array}",
    ).replace("step_id: s", "step_id: back")
    result = run(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn))
    assert result.ok, result.error

    columns = [c.split()[0] for c in ROUND_TRIP_TYPES.replace("\n", " ").split(",") if c.strip()]
    columns = [c for c in columns if not c[0].isdigit() and c != "PRIMARY"]

    def text(table: str) -> list[tuple[object, ...]]:
        # jsonb normalises json text; arrays come back as bigint[]/text[]: compare as text
        select = ", ".join(f"{c}::text" for c in columns)
        return pg_sql(pg_dsn, f"SELECT {select} FROM {table} ORDER BY id")

    source, back = text("src"), text("back")
    for row_source, row_back in zip(source, back, strict=True):
        for name, want, got in zip(columns, row_source, row_back, strict=True):
            if name in ("ints", "texts") and want is None:
                continue  # checked below
            assert got == want, f"{name}: {want!r} came back as {got!r}"
    # BigQuery has no NULL arrays: a NULL list is stored, and read back, as an empty one.
    assert source[1][columns.index("texts")] is None
    assert back[1][columns.index("texts")] == "{}"
    types = dict(
        pg_sql(
            pg_dsn,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'public.back'::regclass AND attnum > 0",
        )
    )
    assert types["n"] == "numeric(12,2)"
    assert types["big"] == "numeric(38,10)"
    assert types["ts"] == "timestamp without time zone"
    assert types["tz"] == "timestamp with time zone"
    assert types["ints"] == "bigint[]"
    assert types["js"] == "jsonb"


def test_a_value_bigquery_cannot_hold_is_quarantined_and_the_rest_loads(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str, pg_dsn: str
) -> None:
    import json

    pg_sql(
        pg_dsn,
        "CREATE TABLE ev (id int PRIMARY KEY, day date, amount numeric(8,2), tags int[]);"
        "INSERT INTO ev SELECT g, DATE '2024-01-01' + g, g * 1.5, '{1}' "
        "FROM generate_series(1, 98) g;"
        "INSERT INTO ev VALUES (99, '10000-01-01', 1, NULL), (100, '2024-05-05', 2, '{1,NULL}')",
    )
    steps = pg_steps("{connection: pg, table: ev}", "{connection: bq, table: ev}")

    result = run(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn))

    assert result.ok, result.error
    step = result.steps[0]
    assert (step.rows_read, step.rows_loaded, step.details["quarantined"]) == (100, 98, 2)
    assert step.details["quarantine_table"] == f"{bq_dataset}.ev__quarantine"
    table = f"`{bigquery_emulator.project}.{bq_dataset}`"
    assert rows(bigquery_emulator, f"SELECT count(*), max(id) FROM {table}.ev") == [(98, 98)]
    held = rows(
        bigquery_emulator,
        f"SELECT reason_code, reason, record, run_id FROM {table}.ev__quarantine ORDER BY reason",
    )
    assert [(code, reason) for code, reason, _, _ in held] == [
        (
            "BQ_VALUE_OUT_OF_RANGE",
            "day: 10000-01-01 is outside the years 1 to 9999 that BigQuery holds",
        ),
        (
            "BQ_VALUE_OUT_OF_RANGE",
            "tags: the list has a NULL element, which a BigQuery ARRAY cannot hold",
        ),
    ]
    first = {"id": 99, "day": "10000-01-01", "amount": "1.00", "tags": None}
    assert json.loads(str(held[0][2])) == first
    assert json.loads(str(held[1][2]))["tags"] == [1, None]
    assert {r[3] for r in held} == {result.run.run_id}

    # The CLI's run summary says so, with the BigQuery jobs the load used.
    import subprocess
    import sys

    cli = subprocess.run(
        [sys.executable, "-m", "deltaflow", "run", str(tmp_path / "pipeline.yml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert f"s/ev: 2 rows quarantined in {bq_dataset}.ev__quarantine" in cli.stdout
    assert "BigQuery: 2 load jobs, " in cli.stdout


def test_watermark_and_merge_read_only_the_partitions_they_need(
    tmp_path: Path,
    bigquery_emulator: BigQueryEmulator,
    bq_dataset: str,
    pg_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pg_sql(
        pg_dsn,
        "CREATE TABLE ev (id int, day date, v text, PRIMARY KEY (id, day));"
        "INSERT INTO ev VALUES (1, '2024-03-01', 'a'), (2, '2024-03-02', 'b'), "
        "(3, '2024-03-02', 'c')",
    )
    plain = pg_steps(
        "{connection: pg, table: ev}",
        "{connection: bq, table: ev, partition_by: {field: day}}",
    )
    assert run(tmp_path, bigquery_emulator, bq_dataset, plain, pg_connection(pg_dsn)).ok
    pg_sql(
        pg_dsn, "UPDATE ev SET v = 'c2' WHERE id = 3; INSERT INTO ev VALUES (4, '2024-03-03', 'd')"
    )
    incremental = (
        pg_steps(
            "{connection: pg, table: ev}",
            "{connection: bq, table: ev, write_mode: merge, primary_key: [id, day], "
            "partition_by: {field: day}}",
        )
        + "  incremental: {cursor: day}\n"
    )
    caplog.set_level(logging.DEBUG, logger="deltaflow.bigquery")

    # No state yet: the watermark is the table's MAX(day), read from its newest partition.
    adopted = run(tmp_path, bigquery_emulator, bq_dataset, incremental, pg_connection(pg_dsn))

    assert adopted.ok, adopted.error
    assert adopted.steps[0].details["incremental"]["mode"] == "adopted"
    assert adopted.steps[0].details["incremental"]["start"].startswith("2024-03-02")
    assert "MAX(day) of" in caplog.text
    assert "read from partition 20240302 on" in caplog.text
    # The partition column is in the key, so the merge's delete is pruned to the batch's days.
    assert "pruned to day from 2024-03-02 to 2024-03-03" in caplog.text
    table = f"`{bigquery_emulator.project}.{bq_dataset}.ev`"
    assert rows(bigquery_emulator, f"SELECT id, v FROM {table} ORDER BY id") == [
        (1, "a"),
        (2, "b"),
        (3, "c2"),
        (4, "d"),
    ]
    # With state committed, the next run reads the state, not the table.
    caplog.clear()
    again = run(tmp_path, bigquery_emulator, bq_dataset, incremental, pg_connection(pg_dsn))
    assert again.steps[0].details["incremental"]["mode"] == "incremental"
    assert "MAX(day) of" not in caplog.text


def test_without_a_storage_endpoint_an_emulator_is_read_over_rest(
    tmp_path: Path,
    bigquery_emulator: BigQueryEmulator,
    bq_dataset: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from deltaflow.connectors.bigquery import source as bigquery_source

    with pytest.raises(AssertionError, match="tried to resolve"):  # the guard is on
        socket.create_connection(("bigquery.googleapis.com", 443), timeout=1)

    def no_storage_client(*args: object) -> None:
        raise AssertionError("the Storage Read client was made")

    monkeypatch.setattr(bigquery_source, "read_client", no_storage_client)
    pq.write_table(
        pa.table({"id": pa.array(range(2500), pa.int64()), "v": [f"v{i}" for i in range(2500)]}),
        tmp_path / "t.parquet",
    )
    assert run(tmp_path, bigquery_emulator, bq_dataset, step("append", path="t.parquet")).ok
    rest_only = f"""\
  rest: {{type: bigquery, project: {bigquery_emulator.project}, dataset: {bq_dataset},
          api_endpoint: "{bigquery_emulator.endpoint}", timeout: 60}}
"""
    steps = """\
        - step_id: all
          type: sync
          source: {connection: rest, table: orders}
          destination: {connection: wh, table: all_rows}
          batch_size: 1000
        - step_id: some
          type: sync
          source: {connection: rest, table: orders, where: "id < 10", columns: [v]}
          destination: {connection: wh, table: some_rows}
        """
    result = run(tmp_path, bigquery_emulator, bq_dataset, steps, rest_only)

    assert result.ok, result.error
    assert [s.rows_loaded for s in result.steps] == [2500, 10]
    import duckdb

    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert con.sql("SELECT count(DISTINCT id), sum(id) FROM all_rows").fetchall() == [
            (2500, sum(range(2500)))
        ]
        assert con.sql("SELECT v FROM some_rows ORDER BY v").fetchall()[0] == ("v0",)


def test_bigquery_to_postgres_run_resumes_after_a_kill_with_only_the_unfinished_splits(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str, pg_dsn: str
) -> None:
    import os
    import subprocess
    import sys

    from google.cloud import bigquery

    n = 200_000  # the emulator cuts a read session of this size into two streams
    people = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "tags": pa.array([[f"t{i % 3}", "x"] if i % 5 else [] for i in range(n)]),
            "address": pa.array(
                [{"city": f"c{i % 7}", "geo": {"lat": i / 8}} for i in range(n)],
                pa.struct([("city", pa.string()), ("geo", pa.struct([("lat", pa.float64())]))]),
            ),
        }
    )
    pq.write_table(people, tmp_path / "people.parquet")
    config = bigquery.LoadJobConfig(source_format="PARQUET")
    config.parquet_options = bigquery.format_options.ParquetOptions()  # type: ignore[no-untyped-call]
    config.parquet_options.enable_list_inference = True
    with (tmp_path / "people.parquet").open("rb") as data:
        bigquery_emulator.client().load_table_from_file(
            data, f"{bigquery_emulator.project}.{bq_dataset}.people", job_config=config
        ).result(timeout=120)
    steps = """\
        - step_id: migrate
          type: sync
          source: {connection: bq, table: people}
          destination: {connection: pg, table: public.people, write_mode: append}
          resumable: true
          parallelism: 2
        """
    path = pipeline_file(tmp_path, bigquery_emulator, bq_dataset, steps, pg_connection(pg_dsn))

    killed = subprocess.run(
        [sys.executable, "-m", "deltaflow", "run", str(path), "--quiet"],
        env={**os.environ, "DELTAFLOW_CRASH_AT": "after_commit"},  # after the first split
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    ((first,),) = pg_sql(pg_dsn, "SELECT count(*) FROM public.people")
    assert 0 < int(first) < n  # one split is in

    result = run_pipeline(
        load_pipeline(path), context=RunContext(), store=RunStore(tmp_path / "runs.db")
    )

    assert result.ok, result.error
    step = result.steps[0]
    assert step.details["splits"] == {"total": 2, "already_loaded": 1}
    assert step.rows_read == n - int(first)  # the loaded split is not read again
    assert pg_sql(pg_dsn, "SELECT count(*), count(DISTINCT id) FROM public.people") == [(n, n)]
    stored = dict(
        pg_sql(
            pg_dsn,
            "SELECT id, jsonb_build_array(tags, address) FROM public.people WHERE id IN (0, 1, 12)",
        )
    )
    assert stored[0] == [[], {"city": "c0", "geo": {"lat": 0.0}}]
    assert stored[1] == [["t1", "x"], {"city": "c1", "geo": {"lat": 0.125}}]
    assert stored[12] == [["t0", "x"], {"city": "c5", "geo": {"lat": 1.5}}]
    types = dict(
        pg_sql(
            pg_dsn,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'public.people'::regclass AND attnum > 0",
        )
    )
    assert (types["tags"], types["address"]) == ("jsonb", "jsonb")
    # the progress record is gone once the stream is in: the next run starts afresh
    assert pg_sql(pg_dsn, "SELECT count(*) FROM public._deltaflow_state") == [(0,)]


def test_nested_field_names_are_made_valid_too(
    tmp_path: Path, bigquery_emulator: BigQueryEmulator, bq_dataset: str
) -> None:
    item = pa.struct([("sku-id", pa.string()), ("qty", pa.int64())])
    pq.write_table(
        pa.table(
            {
                "id": pa.array([1, 2], pa.int64()),
                "ship to": pa.array(
                    [{"zip code": "50667", "1st line": "Dom"}, None],
                    pa.struct([("zip code", pa.string()), ("1st line", pa.string())]),
                ),
                "items": pa.array([[{"sku-id": "a", "qty": 2}], []], pa.list_(item)),
            }
        ),
        tmp_path / "orders.parquet",
    )

    result = run(tmp_path, bigquery_emulator, bq_dataset, step("append", path="orders.parquet"))

    assert result.ok, result.error
    assert result.steps[0].details["renamed_columns"] == {
        "ship to": "ship_to",
        "ship to.zip code": "ship to.zip_code",
        "ship to.1st line": "ship to.c_1st_line",
        "items[].sku-id": "items[].sku_id",
    }
    table = f"`{bigquery_emulator.project}.{bq_dataset}.orders`"
    stored = rows(
        bigquery_emulator,
        f"SELECT id, ship_to.zip_code, ship_to.c_1st_line, items[SAFE_OFFSET(0)].sku_id "
        f"FROM {table} ORDER BY id",
    )
    assert stored == [(1, "50667", "Dom", "a"), (2, None, None, None)]
