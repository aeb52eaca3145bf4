"""deltaflow reconcile: find one changed row among a million, on DuckDB and on PostgreSQL.

    .venv/bin/python benchmarks/reconcile.py                 # 1,000,000 rows
    .venv/bin/python benchmarks/reconcile.py --rows 200000   # a quick look

For each engine, a source table of ``rows`` rows (id, customer, amount decimal(12,2),
status, created_at timestamptz, score double) and an identical copy are made, one value
of one row of the copy is changed, and ``deltaflow.quality.reconcile.reconcile`` (what
``deltaflow reconcile`` runs: counts and 1,024 hashed key ranges on both sides, then the
differing ranges key by key) is timed until it names the changed key. PostgreSQL runs in
a server started here, as in the tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FILL = """
SELECT g AS id, 'customer ' || (g % 9973) AS customer,
       CAST((g % 100000) / 100.0 AS DECIMAL(12,2)) AS amount,
       CASE g % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE 'gone' END
         AS status,
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 second' AS created_at,
       g / 7.0 AS score
FROM generate_series(1, {rows}) AS t(g)
"""


def measure(kind: str, conn: Any, rows: int, changed: int) -> None:
    from deltaflow.connectors.protocol import RunResources
    from deltaflow.quality.reconcile import Side, reconcile

    resources = RunResources(Path.cwd(), "bench")
    source, target = Side(conn, "src", resources), Side(conn, "dst", resources)
    columns = source.columns()
    target.columns()
    started = time.perf_counter()
    result = reconcile(source, target, ["id"], columns)
    seconds = time.perf_counter() - started
    resources.close()
    assert result.changed == [str(changed)], result
    print(
        f"{kind:10s} {rows:,} rows: found the changed key {result.changed[0]} in "
        f"{seconds:.2f} s ({result.differing_buckets} of {result.buckets} ranges differ)"
    )


def duckdb_case(rows: int, changed: int, work: Path) -> None:
    import duckdb

    from deltaflow.config.connections import DuckDBConnection

    path = work / "rec.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE src AS {FILL.format(rows=rows)}")
        con.execute("CREATE TABLE dst AS SELECT * FROM src")
        con.execute(f"UPDATE dst SET amount = amount + 0.01 WHERE id = {changed}")
    conn = DuckDBConnection.model_validate({"type": "duckdb", "path": str(path)})
    measure("DuckDB", conn, rows, changed)


def postgres_case(rows: int, changed: int) -> None:
    import psycopg
    from tests.support.postgres import running_postgres

    from deltaflow.config.connections import PostgresConnection

    with running_postgres() as server:
        with psycopg.connect(server.dsn(), autocommit=True) as con:
            fill = FILL.format(rows=rows).replace("DECIMAL(12,2)", "numeric(12,2)")
            con.execute(f"CREATE TABLE src AS {fill}")  # type: ignore[arg-type]
            con.execute("CREATE TABLE dst AS SELECT * FROM src")
            con.execute(f"UPDATE dst SET amount = amount + 0.01 WHERE id = {changed}")  # type: ignore[arg-type]
            con.execute("VACUUM ANALYZE src")
            con.execute("VACUUM ANALYZE dst")
        conn = PostgresConnection.model_validate({"type": "postgres", "dsn": server.dsn()})
        measure("PostgreSQL", conn, rows, changed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    changed = args.rows * 2 // 3
    with tempfile.TemporaryDirectory() as work:
        duckdb_case(args.rows, changed, Path(work))
    postgres_case(args.rows, changed)


if __name__ == "__main__":
    main()
