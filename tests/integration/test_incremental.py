"""Incremental sync against a real PostgreSQL source, into DuckDB and PostgreSQL, and for
the hardest cases (ties, late rows, crashes) into BigQuery (the emulator).

Each test drives the rows at the edges where loaders lose or repeat them (ties at the
watermark, microseconds, time zones, late commits, NULL cursors) and checks that the
destination holds every source row exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
from deltaflow.config.options import SyncOptions
from deltaflow.orchestration.runner import RunResult
from deltaflow.sync import state

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
DESTINATIONS = ["duckdb", "pg"]
WITH_BIGQUERY = [*DESTINATIONS, "bq"]
#: the emulator and dataset of a test whose destination is "bq" (see the ``bigquery`` fixture)
BQ: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def bigquery(request: pytest.FixtureRequest) -> Any:
    """For a test run with dest "bq": the BigQuery emulator and a fresh dataset."""
    params = getattr(request.node, "callspec", None)
    if params is None or params.params.get("dest") != "bq":
        yield None
        return
    BQ["emulator"] = request.getfixturevalue("bigquery_emulator")
    BQ["dataset"] = request.getfixturevalue("bq_dataset")
    yield BQ
    BQ.clear()


def sql(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as con:
        cursor = con.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def make_events(dsn: str, cursor_type: str = "timestamptz") -> None:
    sql(dsn, f"CREATE TABLE events (id int PRIMARY KEY, v text, updated_at {cursor_type})")


def add(dsn: str, *rows: tuple[int, str, Any]) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        con.cursor().executemany(
            "INSERT INTO events VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE "
            "SET v = excluded.v, updated_at = excluded.updated_at",
            rows,
        )


def write(
    tmp_path: Path,
    dsn: str,
    dest: str,
    write_mode: str = "append",
    incremental: str = "{cursor: updated_at}",
    source: str = "{connection: pg, table: events}",
) -> Path:
    key = ", primary_key: [id]" if write_mode == "merge" else ""
    table = {"duckdb": "raw.events", "pg": "public.events_copy", "bq": "events_copy"}[dest]
    connection = {"duckdb": "wh", "pg": "pg", "bq": "bq"}[dest]
    bq = ""
    if dest == "bq":
        emulator = BQ["emulator"]
        bq = (
            f"bq: {{type: bigquery, project: {emulator.project}, dataset: {BQ['dataset']}, "
            f'credentials: anonymous, api_endpoint: "{emulator.endpoint}", '
            f'storage_endpoint: "127.0.0.1:{emulator.grpc_port}", timeout: 60}}'
        )
    path = tmp_path / "pipeline.yml"
    path.write_text(
        textwrap.dedent(f"""\
        pipeline_id: inc
        connections:
          pg: {{type: postgres, dsn: "{dsn}"}}
          wh: {{type: duckdb, path: wh.duckdb}}
          {bq}
        steps:
          - step_id: events
            type: sync
            source: {source}
            destination: {{connection: {connection}, table: {table}, write_mode: {write_mode}{key}}}
            incremental: {incremental}
        """)
    )
    return path


def run(path: Path, **options: Any) -> RunResult:
    result = run_pipeline(
        load_pipeline(path),
        context=RunContext(sync=SyncOptions(**options)),
        store=RunStore(path.parent / "runs.db"),
    )
    assert result.ok, result.error
    return result


def plan(result: RunResult) -> dict[str, Any]:
    details: dict[str, Any] = result.steps[0].details["incremental"]
    return details


def loaded(path: Path, dsn: str, dest: str) -> list[tuple[int, str]]:
    """The destination's (id, v) rows, sorted, duplicates kept."""
    if dest == "duckdb":
        with duckdb.connect(str(path.parent / "wh.duckdb")) as con:
            return [
                tuple(r) for r in con.sql("SELECT id, v FROM raw.events ORDER BY ALL").fetchall()
            ]  # type: ignore[misc]
    if dest == "bq":
        table = f"`{BQ['emulator'].project}.{BQ['dataset']}.events_copy`"
        found = BQ["emulator"].client().query(f"SELECT id, v FROM {table} ORDER BY id, v")
        return [(int(i), str(v)) for i, v in found.result(timeout=60)]
    return [tuple(r) for r in sql(dsn, "SELECT id, v FROM events_copy ORDER BY id, v")]  # type: ignore[misc]


def source_rows(dsn: str) -> list[tuple[int, str]]:
    return [(int(i), str(v)) for i, v in sql(dsn, "SELECT id, v FROM events ORDER BY id")]


@pytest.mark.parametrize("dest", WITH_BIGQUERY)
@pytest.mark.parametrize("write_mode", ["append", "merge"])
def test_ties_at_the_watermark_are_loaded_once(
    tmp_path: Path, pg_dsn: str, dest: str, write_mode: str
) -> None:
    make_events(pg_dsn)
    add(pg_dsn, (1, "a", T0), (2, "b", T0), (3, "c", T0 - dt.timedelta(hours=1)))
    path = write(tmp_path, pg_dsn, dest, write_mode)
    assert plan(run(path))["mode"] == "full"
    # Rows tied with the watermark arrive after the first run read it.
    add(pg_dsn, (4, "d", T0), (5, "e", T0 + dt.timedelta(seconds=1)))
    second = run(path)
    assert plan(second)["mode"] == "incremental"
    assert plan(second)["start"] == "2024-03-01T12:00:00.000000+00:00"
    assert loaded(path, pg_dsn, dest) == source_rows(pg_dsn)
    third = run(path)  # nothing new: the row at the watermark is read, not loaded again
    assert third.steps[0].rows_read == 1
    assert third.steps[0].rows_loaded == (0 if write_mode == "append" else 1)
    assert loaded(path, pg_dsn, dest) == source_rows(pg_dsn)


@pytest.mark.parametrize("dest", DESTINATIONS)
def test_microseconds_survive_end_to_end(tmp_path: Path, pg_dsn: str, dest: str) -> None:
    make_events(pg_dsn)
    us = dt.timedelta(microseconds=1)
    add(pg_dsn, (1, "a", T0 + us), (2, "b", T0 + 2 * us))
    path = write(tmp_path, pg_dsn, dest)
    assert plan(run(path))["watermark"] == "2024-03-01T12:00:00.000002+00:00"
    # One microsecond apart on either side of the watermark: one tie, one newer.
    add(pg_dsn, (3, "c", T0 + 2 * us), (4, "d", T0 + 3 * us), (5, "e", T0 + us))
    result = run(path)
    assert plan(result)["watermark"] == "2024-03-01T12:00:00.000003+00:00"
    # Row 5 is older than the watermark: it is the late row of the next tests, not here.
    assert loaded(path, pg_dsn, dest) == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]


@pytest.mark.parametrize("dest", DESTINATIONS)
def test_a_non_utc_session_and_naive_cursor_in_a_declared_zone(
    tmp_path: Path, pg_dsn: str, dest: str
) -> None:
    database = pg_dsn.rsplit("/", 1)[1]
    sql(pg_dsn, f"ALTER DATABASE \"{database}\" SET timezone = 'America/New_York'")
    make_events(pg_dsn, "timestamp")  # naive local times, written in Berlin
    add(pg_dsn, (1, "a", dt.datetime(2024, 7, 1, 9, 0)), (2, "b", dt.datetime(2024, 7, 1, 10, 0)))
    incremental = "{cursor: updated_at, timezone: Europe/Berlin}"
    path = write(tmp_path, pg_dsn, dest, incremental=incremental)
    # 10:00 in Berlin (summer, UTC+2) is 08:00 UTC, whatever the session's zone says.
    assert plan(run(path))["watermark"] == "2024-07-01T08:00:00.000000+00:00"
    add(pg_dsn, (3, "c", dt.datetime(2024, 7, 1, 10, 0)), (4, "d", dt.datetime(2024, 7, 1, 10, 1)))
    result = run(path)
    assert plan(result)["start"] == "2024-07-01T08:00:00.000000+00:00"
    assert result.steps[0].rows_read == 3  # the tie (2, 3) and the newer row
    assert loaded(path, pg_dsn, dest) == source_rows(pg_dsn)


@pytest.mark.parametrize("dest", WITH_BIGQUERY)
def test_a_late_commit_inside_lookback_is_caught_and_outside_is_the_documented_limit(
    tmp_path: Path, pg_dsn: str, dest: str
) -> None:
    make_events(pg_dsn)
    add(pg_dsn, (1, "a", T0))
    path = write(tmp_path, pg_dsn, dest, "merge", "{cursor: updated_at, lookback: 15m}")
    run(path)
    # Two transactions that took their timestamp before the watermark but committed after
    # the first run: one 10 minutes behind it (inside lookback), one 2 hours behind.
    add(pg_dsn, (2, "inside", T0 - dt.timedelta(minutes=10)))
    add(pg_dsn, (3, "outside", T0 - dt.timedelta(hours=2)))
    result = run(path)
    assert plan(result)["start"] == "2024-03-01T11:45:00.000000+00:00"
    assert loaded(path, pg_dsn, dest) == [(1, "a"), (2, "inside")]
    # Outside lookback the row is not seen (README: "Limits"); a backfill recovers it.
    run(path, start="2024-03-01T09:00:00+00:00")
    assert loaded(path, pg_dsn, dest) == source_rows(pg_dsn)
    assert state.show(load_pipeline(path))[0].records[0].watermark == (
        "2024-03-01T12:00:00.000000+00:00"  # a backfill never moves the watermark back
    )


@pytest.mark.parametrize("dest", DESTINATIONS)
def test_null_cursor_policies(tmp_path: Path, pg_dsn: str, dest: str) -> None:
    make_events(pg_dsn)
    add(pg_dsn, (1, "a", T0), (2, "null", None), (3, "null too", None))

    failing = write(tmp_path, pg_dsn, dest, "merge", "{cursor: updated_at}")
    result = run_pipeline(
        load_pipeline(failing), context=RunContext(), store=RunStore(tmp_path / "runs.db")
    )
    assert not result.ok
    assert result.error is not None
    assert result.error.code == "INCREMENTAL_NULL_CURSOR"
    assert "2 rows have a NULL cursor (updated_at)" in str(result.error)

    skipping = write(tmp_path, pg_dsn, dest, "append", "{cursor: updated_at, null_cursor: skip}")
    result = run(skipping)
    assert plan(result)["null_cursor_rows"] == 2
    assert (result.steps[0].rows_read, result.steps[0].rows_loaded) == (3, 1)
    assert loaded(skipping, pg_dsn, dest) == [(1, "a")]

    loading = write(tmp_path, pg_dsn, dest, "merge", "{cursor: updated_at, null_cursor: load}")
    run(loading, full_refresh=True)
    sql(pg_dsn, "UPDATE events SET v = 'changed' WHERE id = 2")
    result = run(loading)  # NULL-cursor rows come on every run; merge keeps one copy
    assert plan(result)["null_cursor_rows"] == 2
    assert loaded(loading, pg_dsn, dest) == source_rows(pg_dsn)


@pytest.mark.parametrize("dest", DESTINATIONS)
def test_integer_cursor(tmp_path: Path, pg_dsn: str, dest: str) -> None:
    make_events(pg_dsn)
    add(pg_dsn, *[(i, f"v{i}", T0) for i in range(1, 6)])
    path = write(tmp_path, pg_dsn, dest, incremental="{cursor: id, cursor_type: integer}")
    assert plan(run(path))["watermark"] == "5"
    add(pg_dsn, (6, "v6", T0), (7, "v7", T0))
    result = run(path)
    assert plan(result)["start"] == "5"
    assert result.steps[0].rows_loaded == 2
    assert loaded(path, pg_dsn, dest) == source_rows(pg_dsn)


@pytest.mark.parametrize("dest", DESTINATIONS)
def test_empty_destination_full_or_fallback(tmp_path: Path, pg_dsn: str, dest: str) -> None:
    make_events(pg_dsn)
    now = dt.datetime.now(dt.UTC)
    add(pg_dsn, (1, "old", now - dt.timedelta(days=30)), (2, "recent", now - dt.timedelta(days=1)))
    fallback = write(
        tmp_path,
        pg_dsn,
        dest,
        incremental="{cursor: updated_at, on_empty: fallback, fallback_days: 7}",
    )
    result = run(fallback)
    assert plan(result)["mode"] == "fallback"
    assert loaded(fallback, pg_dsn, dest) == [(2, "recent")]

    full = write(tmp_path, pg_dsn, dest, "merge", "{cursor: updated_at, on_empty: full}")
    result = run(full, full_refresh=True)
    assert loaded(full, pg_dsn, dest) == source_rows(pg_dsn)
    state.reset(load_pipeline(full))
    (tmp_path / "wh.duckdb").unlink(missing_ok=True)
    sql(pg_dsn, "DROP TABLE IF EXISTS events_copy")
    result = run(full)
    assert plan(result)["mode"] == "full"
    assert loaded(full, pg_dsn, dest) == source_rows(pg_dsn)


@pytest.mark.parametrize("dest", DESTINATIONS)
@pytest.mark.parametrize("write_mode", ["append", "merge"])
def test_an_existing_table_is_adopted_from_max_cursor(
    tmp_path: Path, pg_dsn: str, dest: str, write_mode: str
) -> None:
    make_events(pg_dsn)
    add(pg_dsn, (1, "a", T0), (2, "b", T0 + dt.timedelta(minutes=1)))
    path = write(tmp_path, pg_dsn, dest, write_mode)
    run(path)
    state.reset(load_pipeline(path))  # a table loaded before incremental sync existed
    # A tie with MAX(cursor) of the table, and a newer row.
    add(pg_dsn, (3, "c", T0 + dt.timedelta(minutes=1)), (4, "d", T0 + dt.timedelta(minutes=2)))
    result = run(path)
    assert plan(result)["mode"] == "adopted"
    assert plan(result)["start"] == "2024-03-01T12:01:00.000000+00:00"
    assert result.steps[0].rows_read == 3  # the rows at MAX(cursor) and the new one
    # Append knows row 2 is loaded from the table itself; merge absorbs it by key.
    assert loaded(path, pg_dsn, dest) == source_rows(pg_dsn)


@pytest.mark.parametrize("dest", DESTINATIONS)
def test_a_custom_query_gets_the_window_as_parameters(
    tmp_path: Path, pg_dsn: str, dest: str
) -> None:
    make_events(pg_dsn)
    add(pg_dsn, (1, "a", T0), (2, "b", T0 + dt.timedelta(minutes=1)))
    query = (
        '"SELECT id, v, updated_at FROM events WHERE updated_at >= {start_timestamp} '
        'AND updated_at < {end_timestamp}"'
    )
    path = write(tmp_path, pg_dsn, dest, "merge", source=f"{{connection: pg, query: {query}}}")
    run(path)
    add(pg_dsn, (3, "c", T0 + dt.timedelta(minutes=2)))
    result = run(path)
    assert result.steps[0].rows_read == 2
    assert loaded(path, pg_dsn, dest) == source_rows(pg_dsn)


def test_full_refresh_replaces_the_table_and_restarts_the_watermark(
    tmp_path: Path, pg_dsn: str
) -> None:
    make_events(pg_dsn)
    add(pg_dsn, (1, "a", T0), (2, "b", T0))
    path = write(tmp_path, pg_dsn, "duckdb", "merge")
    run(path)
    sql(pg_dsn, "DELETE FROM events WHERE id = 2")
    add(pg_dsn, (3, "c", T0 - dt.timedelta(days=1)))
    result = run(path, full_refresh=True)
    assert result.steps[0].write_mode == "replace"
    assert plan(result)["mode"] == "full_refresh"
    assert loaded(path, pg_dsn, "duckdb") == source_rows(pg_dsn)


@pytest.mark.parametrize("dest", WITH_BIGQUERY)
@pytest.mark.parametrize(
    "point", ["mid_read", "mid_load", "after_load_before_commit", "after_commit"]
)
def test_a_crash_loses_and_repeats_nothing(
    tmp_path: Path, pg_dsn: str, dest: str, point: str
) -> None:
    make_events(pg_dsn)
    add(pg_dsn, *[(i, f"v{i}", T0 + dt.timedelta(seconds=i // 3)) for i in range(300)])
    path = write(tmp_path, pg_dsn, dest)  # append: the hardest case, no key to merge on
    run(path)
    add(pg_dsn, *[(i, f"v{i}", T0 + dt.timedelta(seconds=i // 3)) for i in range(300, 400)])
    env = {**os.environ, "DELTAFLOW_CRASH_AT": point}
    crashed = subprocess.run(
        [
            sys.executable,
            "-m",
            "deltaflow",
            "run",
            str(path),
            "--quiet",
            "--metadata",
            str(tmp_path / "runs.db"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr
    run(path)
    assert loaded(path, pg_dsn, dest) == source_rows(pg_dsn)


@pytest.mark.parametrize("dest", DESTINATIONS)
def test_two_sources_into_one_table_each_with_its_own_watermark(
    tmp_path: Path, pg_dsn: str, dest: str
) -> None:
    for region in ("eu", "us"):
        sql(
            pg_dsn,
            f"CREATE TABLE orders_{region} (id int PRIMARY KEY, v text, updated_at timestamptz)",
        )
    sql(pg_dsn, "INSERT INTO orders_eu VALUES (1, 'eu1', %s), (2, 'eu2', %s)", (T0, T0))
    sql(pg_dsn, "INSERT INTO orders_us VALUES (101, 'us1', %s)", (T0 - dt.timedelta(days=1),))
    sources = """
      - {connection: pg, table: orders_eu, stream: eu}
      - {connection: pg, table: orders_us, stream: us}"""
    path = write(tmp_path, pg_dsn, dest, "merge", source="[]")
    text = path.read_text().replace("source: []", "sources:" + sources.replace("\n", "\n    "))
    path.write_text(text)
    first = run(path)
    assert set(first.steps[0].details["incremental"]) == {"eu", "us"}
    # Each source moves on its own: the US row is older than Europe's watermark.
    sql(pg_dsn, "INSERT INTO orders_us VALUES (102, 'us2', %s)", (T0 - dt.timedelta(hours=20),))
    second = run(path)
    plans = second.steps[0].details["incremental"]
    assert plans["us"]["start"] == "2024-02-29T12:00:00.000000+00:00"
    assert plans["eu"]["start"] == "2024-03-01T12:00:00.000000+00:00"
    every = sql(
        pg_dsn, "SELECT id, v FROM orders_eu UNION ALL SELECT id, v FROM orders_us ORDER BY id"
    )
    assert loaded(path, pg_dsn, dest) == [(int(i), str(v)) for i, v in every]
    records = state.show(load_pipeline(path))[0].records
    assert [r.key for r in records] == ["inc/events/eu", "inc/events/us"]


def test_sources_with_different_columns_are_refused(tmp_path: Path, pg_dsn: str) -> None:
    sql(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY, v text, updated_at timestamptz)")
    sql(pg_dsn, "CREATE TABLE b (id int PRIMARY KEY, v int, updated_at timestamptz)")
    path = write(tmp_path, pg_dsn, "duckdb", "merge", source="[]")
    path.write_text(
        path.read_text().replace(
            "source: []", "sources: [{connection: pg, table: a}, {connection: pg, table: b}]"
        )
    )
    result = run_pipeline(
        load_pipeline(path), context=RunContext(), store=RunStore(tmp_path / "r.db")
    )
    assert result.error is not None
    assert "sources of step 'events' differ: 'b' has (id int32, v int32" in str(result.error)


def test_a_limited_run_loads_a_sample_and_keeps_the_watermark(tmp_path: Path, pg_dsn: str) -> None:
    make_events(pg_dsn)
    add(pg_dsn, *[(i, f"v{i}", T0 + dt.timedelta(seconds=i)) for i in range(10)])
    path = write(tmp_path, pg_dsn, "pg", "merge")

    sample = run(path, limit=3)

    assert sample.steps[0].rows_loaded == 3
    assert state.show(load_pipeline(path))[0].records == []
    run(path)  # the next full run still starts from the beginning
    assert loaded(path, pg_dsn, "pg") == source_rows(pg_dsn)
