"""Quality checks pushed down to DuckDB and PostgreSQL: every check type on rows that
pass and on rows that fail, and what a critical or a warning failure does to a run."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
from deltaflow.orchestration.runner import RunResult
from tests.support.cli import run_cli

NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=3)
# ids 1-2 are clean; 3-4 break one rule or another
ROWS = [
    (1, "a@x.io", "paid", 10.0, NOW),
    (2, "b@x.io", "new", 20.0, NOW),
    (3, None, "paid", 5.0, OLD),
    (3, "c@x.io", "lost", -5.0, OLD),
    (4, "not-an-email", "new", 1000.0, OLD),
]
CLEAN = "id <= 2"

#: (check, expected status, failing rows) — each rule once on clean rows, once on all
CASES: list[tuple[str, str, int | None]] = [
    ("{check: not_null, column: email, filter: 'id <= 2'}", "passed", 0),
    ("{check: not_null, column: email}", "warned", 1),
    ("{check: unique, columns: [id], filter: 'id <= 2'}", "passed", 0),
    ("{check: unique, column: id}", "warned", 2),
    ("{check: between, column: total, min: 0, max: 100, filter: 'id <= 2'}", "passed", 0),
    ("{check: between, column: total, min: 0, max: 100}", "warned", 2),
    (
        "{check: accepted_values, column: status, values: [paid, new], filter: 'id <= 2'}",
        "passed",
        0,
    ),
    ("{check: accepted_values, column: status, values: [paid, new]}", "warned", 1),
    ("{check: regex, column: email, pattern: '^[^@]+@[^@]+$', filter: 'id <= 2'}", "passed", 0),
    ("{check: regex, column: email, pattern: '^[^@]+@[^@]+$'}", "warned", 1),
    ("{check: row_count, min: 1, max: 2, filter: 'id <= 2'}", "passed", None),
    ("{type: expect_table_row_count_to_be_between, min_value: 1, max_value: 2}", "warned", None),
    ("{check: freshness, column: updated_at, max_age: 1d, filter: 'id <= 2'}", "passed", None),
    ("{check: freshness, column: updated_at, max_age: 1d, filter: 'id >= 3'}", "warned", None),
    ("{check: schema, expected: {id: int64, email: string, total: float64}}", "passed", None),
    ("{check: schema, expected: {email: int64, nope: string}}", "warned", None),
    ("{check: custom_sql, sql: 'SELECT count(*) FROM orders WHERE total > 1000000'}", "passed", 0),
    ("{check: custom_sql, sql: 'SELECT * FROM orders WHERE total < 0'}", "warned", 1),
]


def make_table(dest: str, tmp_path: Path, dsn: str) -> None:
    create = (
        "CREATE TABLE orders (id integer, email text, status text, total double precision, "
        "updated_at timestamptz)"
    )
    if dest == "duckdb":
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
            con.execute(create)
            con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", ROWS)
    else:
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(create)
            con.cursor().executemany("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", ROWS)


def run(tmp_path: Path, dsn: str, steps: str, connections: str = "") -> RunResult:
    path = tmp_path / "pipeline.yml"
    path.write_text(
        textwrap.dedent(f"""\
        pipeline_id: dq
        connections:
          wh: {{type: duckdb, path: wh.duckdb}}
          pg: {{type: postgres, dsn: "{dsn}"}}
          out: {{type: files}}
        """)
        + connections
        + "steps:\n"
        + textwrap.indent(textwrap.dedent(steps), "  ")
    )
    return run_pipeline(
        load_pipeline(path), context=RunContext(), store=RunStore(tmp_path / "runs.db")
    )


@pytest.mark.parametrize("dest", ["duckdb", "pg"])
def test_every_check_passes_on_clean_rows_and_fails_on_bad_ones(
    tmp_path: Path, pg_dsn: str, dest: str
) -> None:
    make_table(dest, tmp_path, pg_dsn)
    connection = "wh" if dest == "duckdb" else "pg"
    table = "orders" if dest == "duckdb" else "public.orders"
    checks = "".join(f"    - {c[:-1]}, severity: warning}}\n" for c, _, _ in CASES)
    steps = (
        textwrap.dedent(f"""\
        - step_id: dq
          type: quality
          connection: {connection}
          table: {table}
          checks:
        """)
        + checks
    )

    result = run(tmp_path, pg_dsn, steps)

    assert result.ok, result.error  # warnings only
    found: list[dict[str, Any]] = result.steps[0].details["checks"]
    for (check, status, failing), got in zip(CASES, found, strict=True):
        assert got["status"] == status, f"{check}: {got}"
        if failing is not None:
            assert got["failing_rows"] == failing, f"{check}: {got}"
    by_name = {r["name"]: r for r in found}
    assert by_name["row_count"]["observed"] in (2, 5)
    assert found[11]["observed"] == 5  # the row count alias, all rows
    assert found[15]["message"] == "email is string, expected int64; nope is missing"
    assert found[1]["sample"][0]["id"] == 3  # the failing row itself
    assert found[17]["sample"][0]["total"] == -5.0
    assert 0 < result.steps[0].details["quality_score"] < 100


@pytest.mark.parametrize("dest", ["duckdb", "pg"])
def test_null_passes_and_great_expectations_parameters_mean_what_they_mean_there(
    tmp_path: Path, pg_dsn: str, dest: str
) -> None:
    """1, 1, 2, NULL, NULL, NULL: the NULLs are not checked (only not_null counts them),
    percentages are over the 3 non-NULL rows, and mostly, strict bounds and value_set
    are Great Expectations' (tests/integration/test_quality_ge.py compares with GE)."""
    rows = [(1,), (1,), (2,), (None,), (None,), (None,)]
    if dest == "duckdb":
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
            con.execute("CREATE TABLE t (x bigint)")
            con.executemany("INSERT INTO t VALUES (?)", rows)
    else:
        with psycopg.connect(pg_dsn, autocommit=True) as con:
            con.execute("CREATE TABLE t (x bigint)")
            con.cursor().executemany("INSERT INTO t VALUES (%s)", rows)
    checks = [
        "{check: unique, column: x}",
        "{type: expect_column_values_to_be_unique, column: x, mostly: 0.3}",
        "{type: expect_column_values_to_be_unique, column: x, mostly: 0.34}",
        "{check: not_null, column: x, mostly: 0.5}",
        "{type: expect_column_values_to_be_between, column: x, min_value: 1, max_value: 2,"
        " strict_max: true}",
        "{check: between, column: x, min: 1, strict_min: true}",
        "{check: between, column: x, min: 1, max: 2, inclusive: false}",
        "{type: expect_column_values_to_be_in_set, column: x, value_set: [1], mostly: 0.6}",
        "{check: accepted_values, column: x, values: [2]}",
        "{type: expect_table_row_count_to_be_between, min_value: 6, strict_min: true}",
    ]
    steps = textwrap.dedent(f"""\
        - step_id: dq
          type: quality
          connection: {"wh" if dest == "duckdb" else "pg"}
          table: {"t" if dest == "duckdb" else "public.t"}
          checks:
        """) + "".join(f"    - {c[:-1]}, severity: warning}}\n" for c in checks)

    result = run(tmp_path, pg_dsn, steps)

    assert result.ok, result.error
    found = [
        (c["status"], c["failing_rows"], c["rows_checked"], c["unexpected_percent"])
        for c in result.steps[0].details["checks"]
    ]
    third = pytest.approx(100 / 3)
    assert found == [
        ("warned", 2, 3, pytest.approx(200 / 3)),  # the two 1s; not 5 of 6
        ("passed", 2, 3, pytest.approx(200 / 3)),  # 1 of 3 pass, mostly 0.3
        ("warned", 2, 3, pytest.approx(200 / 3)),  # 1 of 3 pass, mostly 0.34
        ("passed", 3, 6, 50.0),  # not_null counts every row
        ("warned", 1, 3, third),  # 2 is not below max 2
        ("warned", 2, 3, pytest.approx(200 / 3)),  # 1 is not above min 1
        ("warned", 3, 3, 100.0),  # inclusive: false, both bounds strict
        ("passed", 1, 3, third),  # 2 of 3 in the set, mostly 0.6
        ("warned", 2, 3, pytest.approx(200 / 3)),
        ("warned", None, None, None),  # 6 rows, not more than 6
    ]
    unique = result.steps[0].details["checks"][0]
    assert (unique["element_count"], unique["missing_count"]) == (6, 3)
    assert unique["sample"] == [{"x": 1, "rows": 2}]  # the NULL group is no duplicate
    assert unique["message"] == "2 of 3 rows fail"
    assert "mostly 0.34 asks 34% to pass" in result.steps[0].details["checks"][2]["message"]


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            "{type: expect_column_values_to_be_betwen, column: x, min_value: 1}",
            "expect_column_values_to_be_betwen is not supported. Did you mean "
            "'expect_column_values_to_be_between'?",
        ),
        ("{check: unique, column: x, mostly: 95}", "from 0 to 1 (0.95 for 95%), not 95"),
        ("{check: between, column: x, min: 5, max: 1}", "min 5 is above max 1; swap them"),
        ("{check: between, column: x, min: 1, min_value: 2}", "give min or its GE name min_value"),
        (
            "{check: not_null, column: x, mostly: 0.9, max_failure_percent: 10}",
            "give mostly or max_failure_percent, not both",
        ),
        ("{check: row_count, min: 1, mostly: 0.5}", "mostly applies to row checks"),
    ],
)
def test_a_bad_check_is_refused_when_the_pipeline_loads_with_the_fix(
    tmp_path: Path, pg_dsn: str, check: str, message: str
) -> None:
    from deltaflow.errors import ConfigError

    steps = f"""\
        - step_id: dq
          type: quality
          connection: wh
          table: t
          checks:
            - {check}
        """
    with pytest.raises(ConfigError) as refused:
        run(tmp_path, pg_dsn, steps)
    assert message in str(refused.value)


def test_a_critical_failure_stops_the_pipeline_and_a_warning_does_not(
    tmp_path: Path, pg_dsn: str
) -> None:
    make_table("duckdb", tmp_path, pg_dsn)
    warning = """\
        - step_id: dq
          type: quality
          connection: wh
          table: orders
          checks:
            - {check: not_null, column: email, severity: warning}
        - step_id: export
          type: sync
          source: {connection: wh, table: orders}
          destination: {connection: out, path: export, format: parquet}
        """
    warned = run(tmp_path, pg_dsn, warning)
    assert warned.ok, warned.error
    assert [s.status for s in warned.steps] == ["succeeded", "succeeded"]
    assert warned.steps[0].details["checks"][0]["status"] == "warned"

    critical = warning.replace("severity: warning", "severity: critical")
    failed = run(tmp_path, pg_dsn, critical)
    assert not failed.ok
    assert [s.status for s in failed.steps] == ["failed", "skipped"]
    assert failed.steps[0].error_code == "QUALITY_CHECK_FAILED"
    assert "not_null(email) (1 of 5 rows fail)" in str(failed.error)
    stored = RunStore(tmp_path / "runs.db").steps(failed.run.run_id)[0]
    assert stored.details["checks"][0]["status"] == "failed"  # the results are kept


def test_a_check_that_cannot_run_is_errored_and_names_the_problem(
    tmp_path: Path, pg_dsn: str
) -> None:
    make_table("pg", tmp_path, pg_dsn)
    steps = """\
        - step_id: dq
          type: quality
          connection: pg
          table: public.orders
          checks:
            - {check: not_null, column: no_such_column, severity: warning}
            - {check: row_count, min: 1, filter: "id = ; DROP TABLE orders", severity: warning}
        """
    result = run(tmp_path, pg_dsn, steps)
    assert result.ok
    first, second = result.steps[0].details["checks"]
    assert first["status"] == "errored"
    assert "no_such_column" in first["message"]
    assert second["status"] == "errored"
    assert "not a SQL condition" in second["message"]
    with psycopg.connect(pg_dsn) as con:  # the filter was parsed, never pasted
        assert con.execute("SELECT count(*) FROM orders").fetchall() == [(5,)]


def test_deltaflow_check_runs_only_the_checks_and_runs_show_lists_them(
    tmp_path: Path, pg_dsn: str
) -> None:
    import subprocess

    make_table("duckdb", tmp_path, pg_dsn)
    run(
        tmp_path,
        pg_dsn,
        """\
        - step_id: export
          type: sync
          source: {connection: wh, table: orders}
          destination: {connection: out, path: export, format: parquet}
        - step_id: dq
          type: quality
          connection: wh
          table: orders
          checks:
            - {check: unique, column: id, severity: warning}
            - {check: not_null, column: email}
        """,
    )

    def deltaflow(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(tmp_path, *args)

    checked = deltaflow("check", "pipeline.yml", "--metadata", "runs.db")

    assert checked.returncode == 1, checked.stderr  # the critical not_null fails
    assert "quality score" in checked.stdout
    assert "unique(id)" in checked.stdout
    assert "warned" in checked.stdout
    assert "not_null(email)" in checked.stdout
    assert "failed" in checked.stdout
    assert "QUALITY_CHECK_FAILED" in checked.stderr
    store = RunStore(tmp_path / "runs.db")
    runs = store.runs()
    assert [s.step_id for s in store.steps(runs[0].run_id)] == ["dq"]  # only the checks ran
    shown = deltaflow("runs", "show", runs[0].run_id, "--metadata", "runs.db")
    assert "not_null(email)" in shown.stdout
    assert "1 of 5 rows fail" in shown.stdout
    none = deltaflow("check", "pipeline.yml", "--step", "export", "--metadata", "runs.db")
    assert none.returncode == 2
    assert "quality steps: dq" in none.stderr


@pytest.mark.parametrize("dest", ["duckdb", "pg"])
def test_one_percent_bad_rows_are_quarantined_then_replayed_after_the_rule_is_relaxed(
    tmp_path: Path, pg_dsn: str, dest: str
) -> None:
    import subprocess

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 10_000
    bad = {i for i in range(n) if i % 100 == 7}  # 1 %
    pq.write_table(
        pa.table(
            {
                "id": pa.array(range(n), pa.int64()),
                "amount": pa.array([-1.5 if i in bad else i * 0.5 for i in range(n)]),
                "day": pa.array(
                    [dt.date(2024, 1, 1) + dt.timedelta(days=i % 300) for i in range(n)]
                ),
            }
        ),
        tmp_path / "orders.parquet",
    )
    connection = "wh" if dest == "duckdb" else "pg"
    sync = f"""\
        - step_id: load
          type: sync
          source: {{connection: out, path: orders.parquet}}
          destination: {{connection: {connection}, table: orders, write_mode: merge,
                        primary_key: [id]}}
          checks:
            - {{check: between, column: amount, min: 0, action: quarantine}}
        """

    result = run(tmp_path, pg_dsn, sync)

    assert result.ok, result.error
    step = result.steps[0]
    assert (step.rows_read, step.rows_loaded, step.details["quarantined"]) == (n, n - 100, 100)
    assert step.details["row_checks"] == [
        {"check": "between(amount)", "action": "quarantine", "failing_rows": 100}
    ]

    def sql(query: str) -> list[tuple[Any, ...]]:
        if dest == "duckdb":
            with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
                return con.sql(query).fetchall()
        with psycopg.connect(pg_dsn) as con:
            return con.execute(query).fetchall()  # type: ignore[arg-type]

    assert sql("SELECT count(*) FROM orders") == [(n - 100,)]
    held = sql("SELECT reason_code, reason, record FROM orders__quarantine")
    assert sorted(json.loads(r[2])["id"] for r in held) == sorted(bad)
    assert {(r[0], r[1]) for r in held} == {
        ("QUALITY_CHECK", "between(amount): -1.5 fails the check")
    }

    def deltaflow(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(tmp_path, *args)

    listed = deltaflow("quarantine", "list", "pipeline.yml")
    assert listed.returncode == 0, listed.stderr
    assert "QUALITY_CHECK" in listed.stdout
    assert "100" in listed.stdout

    shown = deltaflow("quarantine", "show", "pipeline.yml", "--limit", "2")
    assert shown.stdout.count("[QUALITY_CHECK] between(amount): -1.5 fails the check") == 2
    assert '"id": 7' in shown.stdout

    # Still failing under the same rule: replay keeps them (as new records).
    kept = deltaflow("quarantine", "replay", "pipeline.yml")
    assert "replayed 100, loaded 0, still quarantined 100" in kept.stdout, kept.stderr
    assert sql("SELECT count(*) FROM orders__quarantine") == [(100,)]

    # The rule is relaxed: replay loads them and empties the quarantine.
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text(pipeline.read_text().replace("min: 0,", "min: -10,"))
    replayed = deltaflow("quarantine", "replay", "pipeline.yml")
    assert "replayed 100, loaded 100, still quarantined 0" in replayed.stdout, replayed.stderr
    assert sql("SELECT count(*), count(DISTINCT id) FROM orders") == [(n, n)]
    assert sql("SELECT count(*) FROM orders__quarantine") == [(0,)]
    assert sql("SELECT amount, day FROM orders WHERE id = 7") == [(-1.5, dt.date(2024, 1, 8))]
    assert "nothing in quarantine" in deltaflow("quarantine", "list", "pipeline.yml").stdout


def test_purge_asks_first_and_then_deletes_the_records(tmp_path: Path, pg_dsn: str) -> None:
    import subprocess

    make_table("duckdb", tmp_path, pg_dsn)
    result = run(
        tmp_path,
        pg_dsn,
        """\
        - step_id: copy
          type: sync
          source: {connection: wh, table: orders}
          destination: {connection: wh, table: orders_copy}
          checks:
            - {check: not_null, column: email}
        """,
    )
    assert result.steps[0].details["quarantined"] == 1

    def purge(*args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
        return run_cli(tmp_path, "quarantine", "purge", "pipeline.yml", *args, answer=answer)

    assert purge(answer="n\n").returncode == 1
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert con.sql("SELECT count(*) FROM orders_copy__quarantine").fetchall() == [(1,)]
    done = purge("--yes")
    assert "copy: deleted 1 records" in done.stdout, done.stderr
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert con.sql("SELECT count(*) FROM orders_copy__quarantine").fetchall() == [(0,)]


def test_checks_and_quarantine_on_bigquery(
    tmp_path: Path, pg_dsn: str, bigquery_emulator: Any, bq_dataset: str
) -> None:
    import subprocess

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "id": pa.array([1, 2, 3, 4], pa.int64()),
                "email": pa.array(["a@x.io", "b@x.io", None, "nope"]),
                "total": pa.array([1.0, 2.0, 3.0, -4.0]),
            }
        ),
        tmp_path / "orders.parquet",
    )
    bq = (
        f"  bq: {{type: bigquery, project: {bigquery_emulator.project}, dataset: {bq_dataset}, "
        f'api_endpoint: "{bigquery_emulator.endpoint}", '
        f'storage_endpoint: "127.0.0.1:{bigquery_emulator.grpc_port}", timeout: 60}}\n'
    )
    steps = """\
        - step_id: load
          type: sync
          source: {connection: out, path: orders.parquet}
          destination: {connection: bq, table: orders, write_mode: merge, primary_key: [id]}
          checks:
            - {check: between, column: total, min: 0}
        - step_id: dq
          type: quality
          connection: bq
          table: orders
          checks:
            - {check: not_null, column: email, severity: warning}
            - {check: regex, column: email, pattern: '^[^@]+@[^@]+$', severity: warning}
            - {check: unique, column: id}
            - {check: row_count, min: 3, max: 3}
        """
    path = tmp_path / "pipeline.yml"
    result = run(tmp_path, pg_dsn, steps, bq)
    text = path.read_text()

    assert result.ok, result.error
    assert result.steps[0].details["quarantined"] == 1  # total -4 is held back
    statuses = [
        (c["name"], c["status"], c["failing_rows"]) for c in result.steps[1].details["checks"]
    ]
    assert statuses == [
        ("not_null(email)", "warned", 1),
        ("regex(email)", "passed", 0),
        ("unique(id)", "passed", 0),
        ("row_count", "passed", None),
    ]

    def deltaflow(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(tmp_path, *args)

    path.write_text(text.replace("min: 0}", "min: -10}"))
    replayed = deltaflow("quarantine", "replay", "pipeline.yml", "--step", "load")
    assert "load: replayed 1, loaded 1, still quarantined 0" in replayed.stdout, replayed.stderr
    client = bigquery_emulator.client()
    table = f"`{bigquery_emulator.project}.{bq_dataset}"
    counted = client.query(f"SELECT count(*) FROM {table}.orders`").result()
    assert [tuple(r) for r in counted] == [(4,)]
    left = client.query(f"SELECT count(*) FROM {table}.orders__quarantine`").result()
    assert [tuple(r) for r in left] == [(0,)]
