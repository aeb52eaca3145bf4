"""Benchmark: PostgreSQL paths side by side, in one run on one server.

    .venv/bin/python benchmarks/postgres.py                    # 1M and 5M rows
    .venv/bin/python benchmarks/postgres.py --rows 200000      # a quick look
    .venv/bin/python benchmarks/postgres.py --no-dlt           # skip the peer

It starts its own PostgreSQL server (as the tests do), builds the `events` table of
../shared/reference/PERFORMANCE.md at each size, and measures, each in a fresh process
so that peak RSS is that job's alone:

- raw:            ADBC stream -> per-batch casts -> Parquet writer (the driver's limit)
- pg_to_parquet:  DeltaFlow, PostgreSQL -> Parquet files
- pg_to_duckdb:   DeltaFlow, PostgreSQL -> DuckDB
- copy_binary:    plain binary COPY of a prepared file of the same rows into an empty
                  table defined like the source, without indexes (psycopg, 1 MiB writes)
- parquet_to_pg:  DeltaFlow, Parquet -> PostgreSQL: append into an empty table defined as
                  copy_binary's; merge into one with the primary key; create, where
                  DeltaFlow creates the table itself (lists as JSONB, loaded through a
                  staging table)
- dlt:            dlt with its connectorx backend, PostgreSQL -> DuckDB and -> Parquet
                  (in its own virtualenv: benchmarks/setup_dlt.sh)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
DATA = HERE / ".data" / "postgres"
DLT_PYTHON = HERE / ".venv-dlt" / "bin" / "python"

EVENTS_DDL = """
CREATE TABLE {name} (
  id bigint PRIMARY KEY, user_id int NOT NULL, event_type text NOT NULL,
  amount numeric(12,2), score double precision, is_active boolean,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
  payload jsonb, tags text[], note text)
"""

EVENTS_FILL = """
SELECT setseed(0.42);
INSERT INTO {name}
SELECT g, (g::bigint * 7919) % 100000,
       (ARRAY['page_view','click','add_to_cart','remove_from_cart','checkout','purchase',
              'refund','signup','login','logout'])[1 + g % 10],
       CASE WHEN g % 5 = 0 THEN NULL ELSE round((random() * 10000)::numeric, 2) END,
       random(), g % 2 = 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '5 seconds',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '5 seconds'
         + random() * interval '1 hour',
       jsonb_build_object('device', (ARRAY['ios','android','web'])[1 + g % 3],
                          'country', (ARRAY['DE','FR','US','GB','JP'])[1 + g % 5],
                          'session', 's-' || (g % 999999), 'version', '3.2.' || (g % 10),
                          'referrer', 'google'),
       CASE g % 4 WHEN 0 THEN '{{}}'::text[] WHEN 1 THEN '{{a}}' WHEN 2 THEN '{{a,b}}'
                  ELSE '{{a,b,c}}' END,
       CASE WHEN random() < 0.3 THEN NULL ELSE 'note ' || g END
FROM generate_series(1, {rows}) g;
ANALYZE {name};
"""

# Each job runs in a fresh interpreter and prints one JSON line.
RAW_JOB = textwrap.dedent("""
    import json, resource, sys, time
    import pyarrow as pa, pyarrow.parquet as pq
    from adbc_driver_postgresql import dbapi
    dsn, table, out = sys.argv[1:4]
    started = time.perf_counter()
    rows = 0
    with dbapi.connect(dsn) as db, db.cursor() as cur:
        cur.execute(f"SELECT * FROM {table}")
        reader = cur.fetch_record_batch()
        writer = None
        for batch in reader:
            cols = []
            for col in batch.columns:
                if isinstance(col.type, pa.BaseExtensionType):
                    col = col.storage
                cols.append(col)
            names = batch.schema.names
            batch = pa.RecordBatch.from_arrays(cols, names=names)
            batch = batch.set_column(names.index("amount"), "amount",
                                     batch.column("amount").cast(pa.decimal128(12, 2)))
            if writer is None:
                writer = pq.ParquetWriter(out, batch.schema, compression="zstd")
            writer.write_batch(batch)
            rows += batch.num_rows
        writer.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")

DELTAFLOW_JOB = textwrap.dedent("""
    import json, resource, sys, time
    from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
    loaded = load_pipeline(sys.argv[1])
    started = time.perf_counter()
    result = run_pipeline(loaded, context=RunContext(), store=RunStore(sys.argv[2]))
    seconds = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(str(result.error))
    step = result.steps[0]
    print(json.dumps({"rows": step.rows_loaded, "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")

COPY_JOB = textwrap.dedent("""
    import json, resource, sys, time
    import psycopg
    dsn, table, target, path = sys.argv[1:5]
    with psycopg.connect(dsn, autocommit=True) as con:
        with open(path, "wb") as f, con.cursor().copy(
                f"COPY {table} TO STDOUT (FORMAT binary)") as out:
            for chunk in out:
                f.write(chunk)
        con.execute(f"DROP TABLE IF EXISTS {target}")
        con.execute(f"CREATE TABLE {target} (LIKE {table})")
        started = time.perf_counter()
        with open(path, "rb") as f, con.cursor().copy(
                f"COPY {target} FROM STDIN (FORMAT binary)") as into:
            while chunk := f.read(1 << 20):
                into.write(chunk)
        seconds = time.perf_counter() - started
        rows = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    print(json.dumps({"rows": rows, "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def job(code: str, *args: str, python: str = sys.executable) -> dict[str, float]:
    return _json_line([python, "-c", code, *args])


def _json_line(command: list[str]) -> dict[str, float]:
    """Run a job; its last stdout line is its result. A failure shows the job's stderr."""
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(
            f"job failed ({out.returncode}): {' '.join(command[:2])} ...\n{out.stderr[-3000:]}"
        )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def pipeline(work: Path, name: str, source: str, destination: str, extra: str = "") -> Path:
    path = work / f"{name}.yml"
    path.write_text(
        textwrap.dedent(f"""\
        pipeline_id: {name}
        connections:
          pg: {{type: postgres, dsn: "{{dsn}}"}}
          files: {{type: files, base_path: "{work}"}}
          wh: {{type: duckdb, path: "{work}/{name}.duckdb"}}
        steps:
          - step_id: {name}
            type: sync
            source: {source}
            destination: {destination}
        {extra}""")
    )
    return path


def deltaflow(path: Path, dsn: str) -> dict[str, float]:
    text = path.read_text().replace("{dsn}", dsn)
    path.write_text(text)
    return job(DELTAFLOW_JOB, str(path), str(path.with_suffix(".runs.db")))


def measure(dsn: str, rows: int, work: Path, with_dlt: bool) -> dict[str, dict[str, float]]:
    table = f"events_{rows}"
    results: dict[str, dict[str, float]] = {}
    results["raw"] = job(RAW_JOB, dsn, table, str(work / "raw.parquet"))
    results["pg_to_parquet"] = deltaflow(
        pipeline(
            work,
            "pg_to_parquet",
            f"{{connection: pg, table: {table}}}",
            "{connection: files, path: out_parquet, write_mode: replace}",
        ),
        dsn,
    )
    results["pg_to_duckdb"] = deltaflow(
        pipeline(
            work,
            "pg_to_duckdb",
            f"{{connection: pg, table: {table}}}",
            "{connection: wh, table: raw.events, write_mode: replace}",
        ),
        dsn,
    )
    results["copy_binary"] = job(COPY_JOB, dsn, table, f"{table}_copy", str(work / "copy.bin"))
    # append and merge load a table defined like the source (as the COPY baseline's, plus the
    # primary key for merge); 'create' lets DeltaFlow create the table (lists as JSONB)
    for job_name, like, destination in (
        ("append", "", "write_mode: append"),
        ("merge", " INCLUDING ALL", "write_mode: merge, primary_key: [id]"),
        ("create", None, "write_mode: append, drop_existing: true"),
    ):
        target = f"{table}_{job_name}"
        if like is not None:
            recreate(dsn, target, f"(LIKE {table}{like})")
        results[f"parquet_to_pg_{job_name}"] = deltaflow(
            pipeline(
                work,
                f"parquet_to_pg_{job_name}",
                "{connection: files, path: out_parquet/*.parquet}",
                f"{{connection: pg, table: {target}, {destination}}}",
            ),
            dsn,
        )
    if with_dlt:
        for destination in ("duckdb", "parquet"):
            results[f"dlt_to_{destination}"] = _json_line(
                [
                    str(DLT_PYTHON),
                    str(HERE / "dlt_peer.py"),
                    "--dsn",
                    dsn,
                    "--table",
                    f"public.{table}",
                    "--destination",
                    destination,
                    "--workdir",
                    str(work / f"dlt_{destination}"),
                ]
            )
    for name, r in results.items():
        if int(r["rows"]) != rows:
            raise SystemExit(f"{name}: expected {rows} rows, got {r['rows']}")
    return results


def recreate(dsn: str, table: str, definition: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute(f"CREATE TABLE {table} {definition}")


def build(dsn: str, rows: int) -> None:
    import psycopg

    name = f"events_{rows}"
    with psycopg.connect(dsn, autocommit=True) as con:
        exists = con.execute("SELECT to_regclass(%s)", [name]).fetchone()
        if exists and exists[0]:
            return
        print(f"building {name} ({rows:,} rows)", file=sys.stderr, flush=True)
        con.execute(EVENTS_DDL.format(name=name))
        con.execute(EVENTS_FILL.format(name=name, rows=rows))


def report(rows: int, results: dict[str, dict[str, float]]) -> None:
    raw = rows / results["raw"]["seconds"]
    copy = rows / results["copy_binary"]["seconds"]
    print(f"\n{rows:,} rows")
    print(f"{'job':<24}{'seconds':>9}{'rows/s':>11}{'peak RSS MB':>13}  ratio")
    for name, r in results.items():
        rate = rows / r["seconds"]
        basis = copy if name.startswith("parquet_to_pg") else raw
        basis_name = "copy" if name.startswith("parquet_to_pg") else "raw"
        print(
            f"{name:<24}{r['seconds']:>9.2f}{rate:>11,.0f}{r['peak_rss_mb']:>13,.0f}  "
            f"{rate / basis:.2f}x {basis_name}"
        )
    for dest in ("duckdb", "parquet"):
        peer = results.get(f"dlt_to_{dest}")
        if peer:
            ours = results[f"pg_to_{dest}"]["seconds"]
            print(
                f"DeltaFlow vs dlt (connectorx), PostgreSQL -> {dest}: "
                f"{peer['seconds'] / ours:.2f}x faster"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--no-dlt", action="store_true", help="skip the dlt peer")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import running_postgres

    with_dlt = not args.no_dlt
    if with_dlt:
        subprocess.run(["bash", str(HERE / "setup_dlt.sh")], check=True)
    all_results = {}
    with running_postgres() as server:
        dsn = server.dsn()
        for rows in args.rows:
            build(dsn, rows)
            work = DATA / f"run_{rows}"
            work.mkdir(parents=True, exist_ok=True)
            all_results[rows] = measure(dsn, rows, work, with_dlt)
            report(rows, all_results[rows])
    if len(all_results) > 1:
        small, large = min(all_results), max(all_results)
        for name in ("pg_to_parquet", "pg_to_duckdb"):
            growth = (
                all_results[large][name]["peak_rss_mb"] / all_results[small][name]["peak_rss_mb"]
            )
            print(f"{name}: peak RSS at {large:,} rows is {growth:.2f}x that at {small:,}")


if __name__ == "__main__":
    main()
