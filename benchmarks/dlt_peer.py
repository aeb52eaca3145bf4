"""Peer benchmark: copy one PostgreSQL table with dlt's `sql_table` source and its
fastest backend (`backend="connectorx"`) into DuckDB or into local Parquet files
(dlt's `filesystem` destination, `loader_file_format="parquet"`).

Runs in its own virtualenv (dlt is not a dependency of this project):

    bash benchmarks/setup_dlt.sh
    benchmarks/.venv-dlt/bin/python benchmarks/dlt_peer.py \\
        --dsn postgresql://postgres@127.0.0.1:PORT/db --table public.events \\
        --destination duckdb|parquet --workdir DIR

Prints ONE JSON line:
    {"tool": "dlt", "backend": "connectorx", "destination": ..., "rows": N,
     "seconds": S, "peak_rss_mb": M, "rss_scope": "self"|"children", ...}

- `seconds` is the wall time of `pipeline.run()` only (extract + normalize + load).
  Building the source (SQLAlchemy table reflection) is outside it and reported
  separately as `setup_seconds`; the per-step times come from dlt's own trace.
- `peak_rss_mb` is the larger of `ru_maxrss` for this process (RUSAGE_SELF) and for its
  waited-for children (RUSAGE_CHILDREN); `rss_scope` says which one it was. With dlt's
  defaults (normalize `workers=1`, a "none" pool) everything runs in this process:
  connectorx reads on Rust threads, normalize runs inline, load uses a thread pool.
  `children_in_run` says whether any child process finished during `pipeline.run()`
  (importing dlt forks one `file -b` through platform.architecture(), ~48 MB, before it).
- `rows` is counted in the destination after the load (DuckDB `count(*)`, or the row
  counts of the Parquet files' footers via pyarrow), not taken from dlt's trace.

By default connectorx reads the whole table into one Arrow table (dlt's default for this
backend; `chunk_size` is ignored). `--stream` switches to connectorx's `arrow_stream`
return type with `--chunk-size` rows a batch, which bounds memory at some cost in speed.

Everything the run writes stays under --workdir (dlt's pipelines dir, the DuckDB file,
the Parquet folder); those paths are removed first so every run starts from empty.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

# No telemetry; dlt logs (to stderr) at WARNING, so stdout carries only the JSON line.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

import dlt
from dlt.sources.sql_database import sql_table

PIPELINE_NAME = "dlt_peer"
DATASET = "bench"


def _peak_rss() -> tuple[float, float]:
    # Linux reports ru_maxrss in KB.
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return self_mb, children_mb


def _clean(workdir: Path) -> dict[str, Path]:
    paths = {
        "pipelines": workdir / "dlt_pipelines",
        "duckdb": workdir / "dlt_peer.duckdb",
        "parquet": workdir / "dlt_parquet",
    }
    for path in paths.values():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    wal = workdir / "dlt_peer.duckdb.wal"
    if wal.exists():
        wal.unlink()
    return paths


def _count_duckdb(db_path: Path, table: str) -> int:
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        return int(con.execute(f'SELECT count(*) FROM "{DATASET}"."{table}"').fetchone()[0])


def _count_parquet(root: Path, table: str) -> tuple[int, int]:
    import pyarrow.parquet as pq

    files = sorted((root / DATASET / table).rglob("*.parquet"))
    if not files:
        raise SystemExit(f"no Parquet files under {root / DATASET / table}")
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files), len(files)


def _describe_duckdb(db_path: Path, table: str) -> dict[str, str]:
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [DATASET, table],
        ).fetchall()
    return dict(rows)


def _describe_parquet(root: Path, table: str) -> dict[str, str]:
    import pyarrow.parquet as pq

    first = sorted((root / DATASET / table).rglob("*.parquet"))[0]
    schema = pq.read_schema(first)
    return {field.name: str(field.type) for field in schema}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="postgresql://user@host:port/database")
    parser.add_argument("--table", required=True, help="schema.table, e.g. public.events")
    parser.add_argument("--destination", required=True, choices=["duckdb", "parquet"])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument(
        "--stream",
        action="store_true",
        help="connectorx return_type=arrow_stream (bounded memory) instead of one Arrow table",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=100_000, help="rows a batch with --stream"
    )
    parser.add_argument(
        "--describe",
        action="store_true",
        help="add the destination column types to the JSON line",
    )
    args = parser.parse_args()

    schema_name, _, table_name = args.table.rpartition(".")
    schema_name = schema_name or "public"
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    paths = _clean(workdir)

    if args.destination == "duckdb":
        destination = dlt.destinations.duckdb(credentials=str(paths["duckdb"]))
        run_kwargs: dict = {}
    else:
        destination = dlt.destinations.filesystem(bucket_url=paths["parquet"].as_uri())
        run_kwargs = {"loader_file_format": "parquet"}

    backend_kwargs: dict = {}
    if args.stream:
        backend_kwargs = {"return_type": "arrow_stream", "batch_size": args.chunk_size}

    setup_started = time.perf_counter()
    source = sql_table(
        credentials=args.dsn,
        table=table_name,
        schema=schema_name,
        backend="connectorx",
        backend_kwargs=backend_kwargs,
        chunk_size=args.chunk_size,
    )
    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(paths["pipelines"]),
        destination=destination,
        dataset_name=DATASET,
    )
    setup_seconds = time.perf_counter() - setup_started

    rss_before_run_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    info = pipeline.run(source, write_disposition="append", **run_kwargs)
    seconds = time.perf_counter() - started
    self_mb, children_mb = _peak_rss()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Any child reaped during the run adds CPU time (RUSAGE_CHILDREN is cumulative).
    # Children reaped before it (e.g. `file -b` that platform.architecture() runs while
    # dlt imports) already count in ru_maxrss, which is why both figures are reported.
    children_in_run = (
        children_after.ru_utime + children_after.ru_stime
        > children_before.ru_utime + children_before.ru_stime
        or children_after.ru_maxrss > children_before.ru_maxrss
    )

    info.raise_on_failed_jobs()
    steps = {}
    trace = pipeline.last_trace
    if trace is not None:
        for step in trace.steps:
            if step.started_at and step.finished_at:
                steps[step.step] = round((step.finished_at - step.started_at).total_seconds(), 3)

    # dlt's normalized table name (here the same as the source's).
    dest_table = pipeline.default_schema.naming.normalize_table_identifier(table_name)
    result: dict = {
        "tool": "dlt",
        "backend": "connectorx",
        "destination": args.destination,
    }
    if args.destination == "duckdb":
        rows = _count_duckdb(paths["duckdb"], dest_table)
    else:
        rows, files = _count_parquet(paths["parquet"], dest_table)
        result["files"] = files
    result.update(
        {
            "rows": rows,
            "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds) if seconds else None,
            "peak_rss_mb": round(max(self_mb, children_mb), 1),
            "rss_scope": "self" if self_mb >= children_mb else "children",
            "peak_rss_self_mb": round(self_mb, 1),
            "peak_rss_children_mb": round(children_mb, 1),
            "children_in_run": children_in_run,
            "peak_rss_before_run_mb": round(rss_before_run_mb, 1),
            "setup_seconds": round(setup_seconds, 3),
            "steps": steps,
            "stream": args.stream,
            "dlt": dlt.__version__,
        }
    )
    if args.describe:
        result["columns"] = (
            _describe_duckdb(paths["duckdb"], dest_table)
            if args.destination == "duckdb"
            else _describe_parquet(paths["parquet"], dest_table)
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
