"""Benchmark: sync the `events` table shape from Parquet into DuckDB.

    .venv/bin/python benchmarks/sync_events.py                 # 1M and 5M rows
    .venv/bin/python benchmarks/sync_events.py --rows 200000   # any sizes

For each size it generates the Parquet file once (cached under benchmarks/.data/), then
runs the sync in a fresh Python process, so the peak RSS reported is that of the sync
alone, and prints rows/s and peak RSS. The last line compares peak RSS between the
largest and the smallest size (the goal: at most 1.5x).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE / ".data"

PIPELINE = """\
pipeline_id: bench_events
connections:
  files: {{type: files}}
  warehouse: {{type: duckdb, path: "{warehouse}"{memory_limit}}}
steps:
  - step_id: events
    type: sync
    source: {{connection: files, path: "{parquet}"}}
    destination: {{connection: warehouse, table: raw.events, write_mode: {mode},
                  primary_key: [id]}}
"""

# Runs in a fresh interpreter: one sync, then report wall time and peak RSS as JSON.
CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
    pipeline, store = sys.argv[1], sys.argv[2]
    loaded = load_pipeline(pipeline)
    started = time.perf_counter()
    result = run_pipeline(loaded, context=RunContext(), store=RunStore(store))
    seconds = time.perf_counter() - started
    assert result.ok, result.error
    step = result.steps[0]
    print(json.dumps({"rows": step.rows_loaded, "table_rows": step.table_rows,
                      "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def ensure_parquet(rows: int) -> Path:
    from deltaflow.sample_data import write_events_parquet

    path = DATA / f"events_{rows}.parquet"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        print(f"generating {rows:,} rows -> {path}", file=sys.stderr)
        write_events_parquet(tmp, rows)
        tmp.replace(path)
    return path


def run_once(rows: int, mode: str, memory_limit: str | None) -> dict[str, float]:
    parquet = ensure_parquet(rows)
    work = DATA / f"run_{rows}"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*"):
        old.unlink()
    pipeline = work / "pipeline.yml"
    pipeline.write_text(
        PIPELINE.format(
            warehouse=work / "warehouse.duckdb",
            parquet=parquet,
            mode=mode,
            memory_limit=f', memory_limit: "{memory_limit}"' if memory_limit else "",
        )
    )
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(pipeline), str(work / "runs.db")],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["table_rows"] != rows:
        raise SystemExit(f"expected {rows} rows in the table, found {result['table_rows']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument(
        "--mode",
        choices=["append", "replace", "merge"],
        default="append",
        help="write mode of the sync (the table starts empty)",
    )
    parser.add_argument(
        "--memory-limit", help="DuckDB memory_limit (default: the connection's default)"
    )
    args = parser.parse_args()
    print(f"{'rows':>12} {'mode':>8} {'seconds':>9} {'rows/s':>10} {'peak RSS MB':>12}")
    results = {}
    for rows in args.rows:
        r = run_once(rows, args.mode, args.memory_limit)
        results[rows] = r
        print(
            f"{rows:>12,} {args.mode:>8} {r['seconds']:>9.2f} "
            f"{rows / r['seconds']:>10,.0f} {r['peak_rss_mb']:>12,.0f}",
            flush=True,
        )
    if len(results) > 1:
        small, large = min(results), max(results)
        ratio = results[large]["peak_rss_mb"] / results[small]["peak_rss_mb"]
        print(f"peak RSS at {large:,} rows is {ratio:.2f}x that at {small:,} rows")


if __name__ == "__main__":
    main()
