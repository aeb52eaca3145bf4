"""Benchmark: a full sync, then an incremental sync after 1 % of the rows changed.

    .venv/bin/python benchmarks/incremental.py                  # 5,000,000 rows
    .venv/bin/python benchmarks/incremental.py --rows 500000    # a quick look

It starts its own PostgreSQL server (as the tests do), builds the `events` table of
../shared/reference/PERFORMANCE.md with an index on updated_at, and syncs it into DuckDB
with `write_mode: merge` and `incremental: {cursor: updated_at}`:

1. full:         the first run, on an empty destination (plan 'full')
2. update 1 %:   UPDATE ... SET updated_at = now() for every hundredth row
3. incremental:  the second run, from the committed watermark

Each run is a fresh process. It prints rows read, seconds and peak RSS of both runs, the
ratios (goal: the incremental run reads <= 2 % of the rows and takes <= 10 % of the
full run's time), and checks that the destination equals the source afterwards.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
WORK = HERE / ".data" / "incremental"

JOB = textwrap.dedent("""
    import json, resource, sys, time
    from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
    loaded = load_pipeline(sys.argv[1])
    started = time.perf_counter()
    result = run_pipeline(loaded, context=RunContext(), store=RunStore(sys.argv[2]))
    seconds = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(str(result.error))
    step = result.steps[0]
    print(json.dumps({"rows_read": step.rows_read, "rows_loaded": step.rows_loaded,
                      "seconds": seconds, "mode": step.details["incremental"]["mode"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    import psycopg
    from tests.support.postgres import running_postgres

    from postgres import EVENTS_DDL, EVENTS_FILL, job

    WORK.mkdir(parents=True, exist_ok=True)
    for old in WORK.glob("*.duckdb*"):
        old.unlink()
    rows = args.rows
    with running_postgres() as server:
        dsn = server.dsn()
        with psycopg.connect(dsn, autocommit=True) as con:
            print(f"building events ({rows:,} rows)", file=sys.stderr, flush=True)
            con.execute(EVENTS_DDL.format(name="events"))
            con.execute(EVENTS_FILL.format(name="events", rows=rows))
            con.execute("CREATE INDEX ON events (updated_at)")
            con.execute("VACUUM ANALYZE events")
        path = WORK / "incremental.yml"
        path.write_text(
            textwrap.dedent(f"""\
            pipeline_id: incremental
            connections:
              pg: {{type: postgres, dsn: "{dsn}"}}
              wh: {{type: duckdb, path: "{WORK}/wh.duckdb"}}
            steps:
              - step_id: events
                type: sync
                source: {{connection: pg, table: events}}
                destination: {{connection: wh, table: raw.events, write_mode: merge,
                               primary_key: [id]}}
                incremental: {{cursor: updated_at}}
            """)
        )
        runs = str(WORK / "runs.db")
        full = job(JOB, str(path), runs)
        with psycopg.connect(dsn, autocommit=True) as con:
            started = time.perf_counter()
            changed = con.execute(
                "UPDATE events SET updated_at = now(), score = score + 1 WHERE id % 100 = 0"
            ).rowcount
            update_s = time.perf_counter() - started
        incremental = job(JOB, str(path), runs)
        check(dsn, WORK / "wh.duckdb", rows)
    print(f"\n{rows:,} rows; {changed:,} updated ({changed / rows:.1%}) in {update_s:.1f} s")
    print(f"{'run':<14}{'plan':<13}{'rows read':>12}{'seconds':>10}{'peak RSS MB':>13}")
    for name, r in (("full", full), ("incremental", incremental)):
        print(
            f"{name:<14}{r['mode']:<13}{int(r['rows_read']):>12,}{r['seconds']:>10.2f}"
            f"{r['peak_rss_mb']:>13,.0f}"
        )
    read_share = incremental["rows_read"] / full["rows_read"]
    time_share = incremental["seconds"] / full["seconds"]
    print(f"incremental reads {read_share:.2%} of the rows (goal <= 2 %)")
    print(f"incremental takes {time_share:.2%} of the full sync's time (goal <= 10 %)")


def check(dsn: str, warehouse: Path, rows: int) -> None:
    """The destination holds every source row once, with the updated values."""
    import duckdb
    import psycopg

    with psycopg.connect(dsn) as con:
        source = con.execute("SELECT count(*), sum(score) FROM events").fetchone()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        dest = con.execute(
            "SELECT count(*), count(DISTINCT id), sum(score) FROM raw.events"
        ).fetchone()
    assert source is not None
    assert dest is not None
    if dest[0] != rows or dest[1] != rows or abs(dest[2] - source[1]) > 1e-6 * rows:
        raise SystemExit(f"destination differs from the source: {dest} vs {source}")


if __name__ == "__main__":
    main()
