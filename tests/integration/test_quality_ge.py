"""DeltaFlow's quality checks mean what Great Expectations means: each expectation runs in
GE itself (the side environment .venv-ge that scripts/setup-ge installs, fed the table
as Parquet) and as a DeltaFlow check on the same rows in DuckDB and in PostgreSQL, and
both give the same success, unexpected count, unexpected percent (over the non-NULL
rows), element count and missing count; a row count, the same observed value.

The check DeltaFlow runs is the expectation's own configuration, verbatim: its GE name
and GE parameters (value_set, regex, column_list, min_value, max_value, strict_min,
strict_max, mostly). The row checks a sync runs in flight fail the rows GE finds
unexpected."""

from __future__ import annotations

import json
import random
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
from deltaflow.config.models import RowCheckSpec
from deltaflow.quality.inflight import RowChecks

ROOT = Path(__file__).resolve().parents[2]
GE_PYTHON = ROOT / ".venv-ge" / "bin" / "python"
GE_RUN = ROOT / "tests" / "support" / "ge_run.py"

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("n", pa.int64()),
        ("amount", pa.float64()),
        ("status", pa.string()),
        ("email", pa.string()),
        ("code", pa.string()),
        ("empty", pa.int64()),
    ]
)
PG_TYPES = {pa.int64(): "bigint", pa.float64(): "double precision", pa.string(): "text"}


def generated(seed: int, rows: int = 60) -> pa.Table:
    """Rows with NULLs in every column but id, repeated values, values on and just past
    the bounds the expectations use, and strings that do and do not match the regexes."""
    pick = random.Random(seed).choice
    columns: dict[str, list[Any]] = {
        "id": list(range(rows)),
        "n": [pick([None, None, -1, 0, 0, 3, 5, 10, 10, 11]) for _ in range(rows)],
        "amount": [pick([None, 0.0, 0.5, 42.0, 99.5, 100.0, 100.5]) for _ in range(rows)],
        "status": [pick([None, "paid", "paid", "new", "lost", "PAID", ""]) for _ in range(rows)],
        "email": [
            pick([None, "a@x.io", "b@y.com", "a@x.io", "not-an-email", "c@x.io ", "@", "x@y"])
            for _ in range(rows)
        ],
        "code": [pick([None, "123-ab", "12-ab", "999", "abc", "x1234"]) for _ in range(rows)],
        "empty": [None] * rows,
    }
    return pa.table(columns, schema=SCHEMA)


def expect(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": f"expect_{kind}", "kwargs": kwargs}


#: every accepted expectation, with each GE parameter, on the generated tables
EXPECTATIONS = [
    expect("column_values_to_not_be_null", column="n"),
    expect("column_values_to_not_be_null", column="n", mostly=0.8),
    expect("column_values_to_not_be_null", column="id"),
    expect("column_values_to_not_be_null", column="empty", mostly=0.0),
    expect("column_values_to_be_unique", column="n"),
    expect("column_values_to_be_unique", column="n", mostly=0.05),
    expect("column_values_to_be_unique", column="id"),
    expect("column_values_to_be_unique", column="email", mostly=0.5),
    expect("column_values_to_be_unique", column="empty"),
    expect("compound_columns_to_be_unique", column_list=["n", "status"]),
    expect("compound_columns_to_be_unique", column_list=["id", "n"]),
    expect("compound_columns_to_be_unique", column_list=["empty", "code"], mostly=0.5),
    expect("column_values_to_be_between", column="n", min_value=0, max_value=10),
    expect("column_values_to_be_between", column="n", min_value=0, max_value=10, strict_min=True),
    expect("column_values_to_be_between", column="n", min_value=0, max_value=10, strict_max=True),
    expect(
        "column_values_to_be_between",
        column="n",
        min_value=0,
        max_value=10,
        strict_min=True,
        strict_max=True,
        mostly=0.5,
    ),
    expect("column_values_to_be_between", column="n", min_value=0),
    expect("column_values_to_be_between", column="n", max_value=10, strict_max=True, mostly=0.7),
    expect("column_values_to_be_between", column="amount", min_value=0, max_value=100),
    expect("column_values_to_be_between", column="amount", min_value=0.5, max_value=99.5),
    expect("column_values_to_be_between", column="amount", min_value=0, strict_min=True),
    expect("column_values_to_be_between", column="empty", min_value=0, max_value=1),
    expect("column_values_to_be_in_set", column="status", value_set=["paid", "new"]),
    expect("column_values_to_be_in_set", column="status", value_set=["paid", "new", "", "lost"]),
    expect("column_values_to_be_in_set", column="status", value_set=["paid"], mostly=0.3),
    expect("column_values_to_be_in_set", column="n", value_set=[0, 5, 10], mostly=0.5),
    expect("column_values_to_be_in_set", column="empty", value_set=[1]),
    expect("column_values_to_match_regex", column="email", regex=r"^[^@\s]+@[^@\s]+\.(io|com)$"),
    expect("column_values_to_match_regex", column="email", regex="@"),
    expect("column_values_to_match_regex", column="code", regex=r"\d{3}"),
    expect("column_values_to_match_regex", column="code", regex=r"^\d+$", mostly=0.2),
    expect("column_values_to_match_regex", column="status", regex="^$", mostly=0.1),
    expect("table_row_count_to_be_between", min_value=1, max_value=60),
    expect("table_row_count_to_be_between", min_value=60, strict_min=True),
    expect("table_row_count_to_be_between", max_value=60, strict_max=True),
    expect("table_row_count_to_be_between", min_value=0, max_value=0),
]

#: the issue's example: 1, 1, 2, NULL, NULL, NULL
ISSUE = pa.table({"x": [1, 1, 2, None, None, None]}, schema=pa.schema([("x", pa.int64())]))
ISSUE_EXPECTATIONS = [
    expect("column_values_to_be_unique", column="x"),  # 2 of 3 non-NULL, not 5 of 6
    expect("column_values_to_be_unique", column="x", mostly=0.3),
    expect("column_values_to_not_be_null", column="x"),
    expect("column_values_to_not_be_null", column="x", mostly=0.5),
    expect("column_values_to_be_between", column="x", min_value=1, max_value=2, strict_max=True),
    expect("column_values_to_be_in_set", column="x", value_set=[1], mostly=0.6),
    expect("column_values_to_be_in_set", column="x", value_set=[1], mostly=0.7),
]

DATASETS: dict[str, tuple[pa.Table, list[dict[str, Any]]]] = {
    "issue": (ISSUE, ISSUE_EXPECTATIONS),
    **{f"generated{seed}": (generated(seed), EXPECTATIONS) for seed in (1, 2, 3)},
}


@pytest.fixture(scope="module")
def ge_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """GE's result for every expectation of every dataset, from one run of GE."""
    assert GE_PYTHON.exists(), f"{GE_PYTHON} is missing: run scripts/setup-ge (scripts/test does)"
    folder = tmp_path_factory.mktemp("ge")
    suites = []
    for name, (table, expectations) in DATASETS.items():
        pq.write_table(table, folder / f"{name}.parquet")
        suites.append({"data": str(folder / f"{name}.parquet"), "expectations": expectations})
    (folder / "suites.json").write_text(json.dumps(suites))
    done = subprocess.run(
        [str(GE_PYTHON), str(GE_RUN), str(folder / "suites.json")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["version"] == "1.24.1", out["version"]  # the version scripts/setup-ge pins
    return dict(zip(DATASETS, out["results"], strict=True))


def load(engine: str, table: pa.Table, tmp_path: Path, dsn: str) -> None:
    if engine == "duckdb":
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
            con.register("rows", table)
            con.execute("CREATE TABLE data AS SELECT * FROM rows")
        return
    columns = ", ".join(f'"{f.name}" {PG_TYPES[f.type]}' for f in table.schema)
    marks = ", ".join(["%s"] * table.num_columns)
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"CREATE TABLE data ({columns})")
        values = [tuple(r.values()) for r in table.to_pylist()]
        con.cursor().executemany(f"INSERT INTO data VALUES ({marks})", values)


def deltaflow_results(
    engine: str, expectations: list[dict[str, Any]], tmp_path: Path, dsn: str
) -> list[dict[str, Any]]:
    """DeltaFlow's results of the expectations, each given as its GE configuration."""
    checks = [
        {"type": e["type"], **e["kwargs"], "name": f"e{i}", "severity": "warning"}
        for i, e in enumerate(expectations)
    ]
    path = tmp_path / "pipeline.yml"
    path.write_text(
        textwrap.dedent(f"""\
        pipeline_id: ge
        connections:
          duckdb: {{type: duckdb, path: wh.duckdb}}
          pg: {{type: postgres, dsn: "{dsn}"}}
        steps:
          - step_id: dq
            type: quality
            connection: {engine}
            table: {"data" if engine == "duckdb" else "public.data"}
            checks: {json.dumps(checks)}
        """)
    )
    result = run_pipeline(
        load_pipeline(path), context=RunContext(), store=RunStore(tmp_path / "runs.db")
    )
    assert result.ok, result.error  # every check a warning: the run goes on
    found: list[dict[str, Any]] = result.steps[0].details["checks"]
    return found


def differences(ge: dict[str, Any], ours: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """What DeltaFlow reported differently from GE: {field: (GE's, DeltaFlow's)}."""
    if ours["status"] == "errored":
        return {"status": ("ran", ours["message"])}
    got = {"success": ours["status"] == "passed"}
    if ge["observed_value"] is not None:  # a table expectation: the row count
        got["observed_value"] = ours["observed"]
    else:
        got.update(
            unexpected_count=ours["failing_rows"],
            unexpected_percent=ours["unexpected_percent"],
            element_count=ours["element_count"],
            missing_count=ours["missing_count"],
        )
    return {
        k: (ge[k], v)
        for k, v in got.items()
        if not (v == ge[k] or (isinstance(v, float) and v == pytest.approx(ge[k])))
    }


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("engine", ["duckdb", "pg"])
def test_every_expectation_gives_what_great_expectations_gives(
    ge_results: dict[str, list[dict[str, Any]]],
    tmp_path: Path,
    pg_dsn: str,
    engine: str,
    dataset: str,
) -> None:
    table, expectations = DATASETS[dataset]
    load(engine, table, tmp_path, pg_dsn)

    ours = deltaflow_results(engine, expectations, tmp_path, pg_dsn)

    wrong = {
        json.dumps(e): diff
        for e, ge, mine in zip(expectations, ge_results[dataset], ours, strict=True)
        if (diff := differences(ge, mine))
    }
    assert not wrong, "\n".join(f"{e}: (GE, DeltaFlow) {d}" for e, d in wrong.items())


def test_the_generated_tables_reach_every_outcome(
    ge_results: dict[str, list[dict[str, Any]]],
) -> None:
    """The data is not too kind: GE itself passes and fails expectations of each kind,
    with and without NULLs, so the comparison above compares something."""
    outcomes: dict[str, set[bool]] = {}
    for name, (_, expectations) in DATASETS.items():
        for e, ge in zip(expectations, ge_results[name], strict=True):
            outcomes.setdefault(e["type"], set()).add(ge["success"])
    assert all(seen == {True, False} for seen in outcomes.values()), outcomes
    issue = ge_results["issue"][0]
    assert (issue["unexpected_count"], issue["element_count"]) == (2, 6)
    assert issue["unexpected_percent"] == pytest.approx(200 / 3)


#: the expectations a sync can check in flight (no mostly: each row is judged alone)
IN_FLIGHT = (
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_match_regex",
)


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_in_flight_row_checks_fail_the_rows_great_expectations_finds_unexpected(
    ge_results: dict[str, list[dict[str, Any]]], dataset: str
) -> None:
    table, expectations = DATASETS[dataset]
    cases = [
        (i, e)
        for i, e in enumerate(expectations)
        if e["type"] in IN_FLIGHT and "mostly" not in e["kwargs"]
    ]
    specs = [
        RowCheckSpec.model_validate(
            {"type": e["type"], **e["kwargs"], "name": f"e{i}", "action": "warn"}
        )
        for i, e in cases
    ]
    checks = RowChecks(specs, "run1", dataset)
    checks.prepare(table.schema.names)
    for batch in table.to_batches(max_chunksize=7):  # counts add up over batches
        assert checks.apply(batch).num_rows == batch.num_rows  # warn loads every row

    failing = {c["check"]: c["failing_rows"] for c in checks.summary()}
    expected = {f"e{i}": ge_results[dataset][i]["unexpected_count"] for i, _ in cases}
    assert failing == expected
