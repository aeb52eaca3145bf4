"""deltaflow serve, PostgreSQL set-up: the service's own overhead per run, 1,000 runs drained.

    .venv/bin/python benchmarks/service_overhead.py                  # 1,000 runs, 1 round
    .venv/bin/python benchmarks/service_overhead.py --runs 200       # a quick look
    .venv/bin/python benchmarks/service_overhead.py --repeat 3       # median and spread

Each round starts its own PostgreSQL server on a free loopback port (as the tests do),
``deltaflow serve --database postgresql://...`` (no in-process workers in that set-up:
runs are queued in PostgreSQL) and ``--workers`` (2) ``deltaflow worker`` processes
(``--concurrency 1`` each) on the same database. It onboards a tenant whose warehouse
(its x_meta tables) is that PostgreSQL database (``--warehouse default`` keeps the
tenant's default DuckDB warehouse instead), with quotas no trigger reaches.

The configs folder holds ONE trivial pipeline: a DuckDB sync step of 5 rows into a DuckDB
file of the run's own (``runs/{run_id}.duckdb``), so runs never contend for one file lock.
It is triggered ``--runs`` times with ``allow_concurrent: true`` (the 409 rule, one active
run per pipeline, would refuse every trigger after the first), by ``--clients`` concurrent
HTTP clients, as fast as the service answers. The round then waits until every run ended
(at most ``--drain`` seconds) and reads each run and its steps back from the API.

Reported per round: runs triggered / recorded / succeeded / duplicated / missing; drain
time (first trigger to last run ended, from the runs' own timestamps) and runs/s; and per
run, median, p90 and p99 of

- queue wait:  started_at - requested_at (the queue, and the wait for a free worker),
- run overhead: (ended_at - started_at) - sum(step duration_s): what the service spends
  around the steps once a worker holds the run,
- trigger to completion minus step time: (ended_at - requested_at) - sum(step duration_s),
  the issue's figure, which with 1,000 runs queued at once is mostly queue wait,
- the same for the first ``--workers`` runs only (no queue ahead of them: the floor).

One run's timeline (procrastinate's job events, the run record, its step) is printed at
the end of each round. Only 127.0.0.1 is spoken to; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from service_common import (
    ADMIN_KEY,
    ENDED,
    ROOT,
    TENANT,
    list_runs,
    pct,
    start,
    start_server,
    stop,
)

PIPELINE_PATH = f"/api/v1/pipelines/run/{TENANT}/load/tiny"

PIPELINE = """\
pipeline_id: tiny
connections:
  wh: {type: duckdb, path: "runs/{run_id}.duckdb"}
steps:
  - step_id: rows
    type: sync
    source: {connection: wh, query: "SELECT range AS id, 'row ' || range AS name FROM range(5)"}
    destination: {connection: wh, table: raw.rows, write_mode: replace}
"""


def when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


def start_workers(work: Path, dsn: str, count: int) -> list[subprocess.Popen[bytes]]:
    import psycopg

    command = ["worker", "--database", dsn, "--configs", "configs", "--state-dir", "state"]
    workers = [start(work, f"worker{n}", [*command, "--concurrency", "1"]) for n in range(count)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with psycopg.connect(dsn, autocommit=True) as con:
            row = con.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
        if row and row[0] >= count:
            return workers
        if any(w.poll() is not None for w in workers):
            break
        time.sleep(0.2)
    for w in workers:
        stop(w)
    logs = "\n".join(p.read_text() for p in sorted(work.glob("worker*.log")))
    raise SystemExit(f"{count} workers did not register within 60 s:\n{logs[-4000:]}")


def onboard(url: str, runs: int, warehouse: dict[str, Any] | None) -> dict[str, str]:
    """The tenant, with quotas the triggers never reach; its admin key."""
    quotas = {
        "concurrent_runs": min(10_000, runs),
        "runs_per_day": 10_000_000,
        "requests_per_minute": 1_000_000,
    }
    body: dict[str, Any] = {"tenant_id": TENANT, "quotas": quotas}
    if warehouse is not None:
        body["warehouse"] = warehouse
    answer = httpx.post(
        f"{url}/api/v1/tenants", json=body, headers={"X-API-Key": ADMIN_KEY}, timeout=60
    )
    answer.raise_for_status()
    return {"X-API-Key": answer.json()["api_key"]}


async def trigger_all(
    url: str, key: dict[str, str], runs: int, clients: int
) -> tuple[list[str], Counter[str], float]:
    """Trigger ``runs`` runs from ``clients`` concurrent clients; the run ids, the failed
    answers by status (or exception), and the seconds it took."""
    triggered: list[str] = []
    failures: Counter[str] = Counter()
    todo = iter(range(runs))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one_client(http: httpx.AsyncClient) -> None:
        for _ in todo:
            try:
                answer = await http.post(
                    PIPELINE_PATH, json={"allow_concurrent": True}, headers=key
                )
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] += 1
                continue
            if answer.status_code == 202:
                triggered.append(answer.json()["pipeline_logging_id"])
            else:
                failures[str(answer.status_code)] += 1

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await asyncio.gather(*(one_client(http) for _ in range(clients)))
    return triggered, failures, time.perf_counter() - began


def await_drain(url: str, expected: int, seconds: float) -> list[dict[str, Any]]:
    """Poll the run list until ``expected`` runs ended (or ``seconds`` passed)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        deadline = time.monotonic() + seconds
        while True:
            listed = list_runs(http, {"X-API-Key": ADMIN_KEY})
            ended = sum(r["status"] in ENDED for r in listed)
            if ended >= expected or time.monotonic() > deadline:
                return listed
            time.sleep(1.0)


async def details(url: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """Each run with its steps, from ``GET /api/v1/runs/{id}`` (10 at a time)."""
    gate = asyncio.Semaphore(10)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def one(run_id: str) -> dict[str, Any]:
            async with gate:
                answer = await http.get(
                    f"/api/v1/runs/{run_id}",
                    params={"tenant_id": TENANT},
                    headers={"X-API-Key": ADMIN_KEY},
                )
                answer.raise_for_status()
                body: dict[str, Any] = answer.json()
                return body

        return list(await asyncio.gather(*(one(r) for r in run_ids)))


def add_recorded_at(dsn: str, runs: list[dict[str, Any]]) -> None:
    """Each ended run's ``recorded_at``: the store's last heartbeat, which ``finish_run``
    stamps when it records the end, after the tenant's x_meta write. The run's
    ``ended_at`` is stamped earlier, when the steps are done."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        stamps = dict(con.execute("SELECT run_id, heartbeat_at FROM runs").fetchall())
    for run in runs:
        run["recorded_at"] = stamps.get(run["pipeline_logging_id"])


def per_run(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Milliseconds per ended run: queue wait, overhead, trigger to completion - steps."""
    out: dict[str, list[float]] = {"queue wait": [], "run overhead": [], "trigger-end - steps": []}
    out["step time"] = []
    out["ended -> recorded"] = []
    out["trigger-recorded - steps"] = []
    for run in runs:
        if run["status"] not in ENDED or not run["started_at"] or not run["ended_at"]:
            continue
        requested, started, ended = (
            when(run[k]) for k in ("requested_at", "started_at", "ended_at")
        )
        steps = sum(s["duration_s"] or 0.0 for s in run["steps"]) * 1000
        out["queue wait"].append((started - requested).total_seconds() * 1000)
        out["run overhead"].append((ended - started).total_seconds() * 1000 - steps)
        out["trigger-end - steps"].append((ended - requested).total_seconds() * 1000 - steps)
        out["step time"].append(steps)
        if run.get("recorded_at"):
            recorded = when(run["recorded_at"])
            out["ended -> recorded"].append((recorded - ended).total_seconds() * 1000)
            out["trigger-recorded - steps"].append(
                (recorded - requested).total_seconds() * 1000 - steps
            )
    return out


def timeline(dsn: str, run: dict[str, Any]) -> None:
    """One run's events, in order, relative to its trigger."""
    import psycopg

    t0 = when(run["requested_at"])
    events: list[tuple[dt.datetime, str]] = [
        (t0, "run requested (trigger's transaction: run row + procrastinate job)"),
    ]
    with psycopg.connect(dsn, autocommit=True) as con:
        rows = con.execute(
            "SELECT e.type, e.at FROM procrastinate_events e "
            "JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.queueing_lock = %s OR j.args->>'run_id' = %s ORDER BY e.at, e.id",
            (run["pipeline_logging_id"], run["pipeline_logging_id"]),
        ).fetchall()
    events += [(at, f"procrastinate job {kind}") for kind, at in rows]
    if run["started_at"]:
        events.append((when(run["started_at"]), "run started_at (the worker holds it)"))
    for step in run["steps"]:
        if step["started_at"]:
            events.append((when(step["started_at"]), f"step {step['step_id']} started"))
        if step["ended_at"]:
            took = (step["duration_s"] or 0) * 1000
            events.append((when(step["ended_at"]), f"step {step['step_id']} ended ({took:.1f} ms)"))
    if run["ended_at"]:
        events.append((when(run["ended_at"]), f"run ended_at ({run['status']})"))
    if run.get("recorded_at"):
        events.append((when(run["recorded_at"]), "end recorded (after the x_meta write)"))
    print(f"  one run's timeline ({run['pipeline_logging_id']}), ms after its trigger:")
    for at, what in sorted(events, key=lambda e: e[0]):
        print(f"    {(at - t0).total_seconds() * 1000:9.1f}  {what}")


def one_round(args: argparse.Namespace, number: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import running_postgres

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="deltaflow-overhead-bench-"))
    try:
        (work / "configs" / "load").mkdir(parents=True)  # not the tenant's own folder
        (work / "configs" / "load" / "tiny.yml").write_text(PIPELINE)
        (work / "runs").mkdir()
        with running_postgres() as pg:
            dsn = pg.dsn()
            options = ["--database", dsn, "--configs", "configs", "--state-dir", "state"]
            server, url = start_server(work, options)
            workers: list[subprocess.Popen[bytes]] = []
            try:
                workers = start_workers(work, dsn, args.workers)
                (work / "warehouse.dsn").write_text(dsn)
                warehouse = {"type": "postgres", "dsn": f"${{file:{work / 'warehouse.dsn'}}}"}
                key = onboard(url, args.runs, None if args.warehouse == "default" else warehouse)
                triggered, failures, trigger_s = asyncio.run(
                    trigger_all(url, key, args.runs, args.clients)
                )
                listed = await_drain(url, len(triggered), args.drain)
                runs = asyncio.run(details(url, [r["pipeline_logging_id"] for r in listed]))
                add_recorded_at(dsn, runs)
                figures = report(number, args, triggered, failures, trigger_s, runs)
                sample = sorted((r for r in runs if r["ended_at"]), key=lambda r: r["requested_at"])
                if sample:
                    timeline(dsn, sample[len(sample) // 2])
            finally:
                for process in [*workers, server]:
                    stop(process)
        logs = "".join(p.read_text(errors="replace") for p in work.glob("*.log"))
        problems = logs.count("Traceback") + logs.count("ERROR")
        print(f"  process logs     {problems} ERROR/Traceback lines")
        if problems and args.verbose:
            print(logs[-4000:])
    finally:
        if args.keep:
            print(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"  machine load     {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        "(1-min average)"
    )
    return figures


def report(
    number: int,
    args: argparse.Namespace,
    triggered: list[str],
    failures: Counter[str],
    trigger_s: float,
    runs: list[dict[str, Any]],
) -> dict[str, float]:
    by_id = Counter(r["pipeline_logging_id"] for r in runs)
    wanted = set(triggered)
    duplicated = sum(n - 1 for n in by_id.values() if n > 1)
    missing = sum(1 for r in wanted if by_id[r] == 0)
    unasked = sum(1 for r in by_id if r not in wanted)
    outcomes = Counter(r["status"] for r in runs)
    ended = [r for r in runs if r["ended_at"]]
    first = min((when(r["requested_at"]) for r in runs), default=None)
    last = max((when(r.get("recorded_at") or r["ended_at"]) for r in ended), default=None)
    drain_s = (last - first).total_seconds() if first and last else float("nan")
    figures: dict[str, float] = {
        "runs triggered": float(len(triggered)),
        "runs recorded": float(len(by_id)),
        "runs succeeded": float(outcomes["succeeded"]),
        "runs duplicated": float(duplicated),
        "runs missing": float(missing),
        "runs not asked for": float(unasked),
        "trigger failures": float(sum(failures.values())),
        "trigger s": trigger_s,
        "triggers/s": len(triggered) / trigger_s if trigger_s else float("nan"),
        "drain s": drain_s,
        "runs/s": len(ended) / drain_s if drain_s else float("nan"),
        # what one worker spends per run, from the throughput
        "worker ms per run": 1000 * args.workers * drain_s / len(ended) if ended else 0.0,
    }
    series = per_run(runs)
    for name, values in series.items():
        for p in (50, 90, 99):
            figures[f"{name} p{p} ms"] = pct(values, p)
    earliest = sorted(ended, key=lambda r: r["requested_at"])[: args.workers]
    floor = per_run(earliest)["trigger-end - steps"]
    figures["first runs: trigger-end - steps ms"] = statistics.median(floor) if floor else 0.0
    print(f"\nround {number}:")
    for name, value in figures.items():
        print(f"  {name:36s} {value:10.1f}")
    print(f"  outcomes         {dict(outcomes)}")
    if failures:
        print(f"  failed triggers  {dict(failures)}")
    return figures


def summary(rounds: list[dict[str, float]]) -> None:
    print(f"\n{len(rounds)} round(s): median (min - max)")
    for name in rounds[0]:
        values = [r[name] for r in rounds]
        print(
            f"  {name:36s} {statistics.median(values):10.1f}  "
            f"({min(values):.1f} - {max(values):.1f})"
        )
    exact = all(
        r["runs duplicated"] == 0 and r["runs missing"] == 0 and r["runs not asked for"] == 0
        for r in rounds
    )
    worst = max(r["run overhead p50 ms"] for r in rounds)
    print(
        f"every run recorded exactly once: {'yes' if exact else 'NO'}; "
        f"median run overhead < 200 ms: {'met' if worst < 200 else 'NOT met'} "
        f"(worst round {worst:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs triggered (<= 10,000)")
    parser.add_argument("--workers", type=int, default=2, help="deltaflow worker processes")
    parser.add_argument("--clients", type=int, default=20, help="concurrent triggering clients")
    parser.add_argument("--drain", type=float, default=900.0, help="seconds to await the runs")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each on a fresh set-up")
    parser.add_argument(
        "--warehouse",
        choices=("postgres", "default"),
        default="postgres",
        help="the tenant's warehouse (x_meta): the set-up's PostgreSQL, or its default DuckDB",
    )
    parser.add_argument("--keep", action="store_true", help="keep each round's folder")
    parser.add_argument("--verbose", action="store_true", help="show the process logs' tail")
    args = parser.parse_args()
    if not 1 <= args.runs <= 10_000:
        parser.error(f"--runs {args.runs}: give 1 to 10000 (the tenant quota's limit)")
    if not 1 <= args.workers <= 8:
        parser.error(f"--workers {args.workers}: give 1 to 8 (PostgreSQL allows 50 connections)")
    if not 1 <= args.clients <= 50:
        parser.error(f"--clients {args.clients}: give 1 to 50")
    print(
        f"deltaflow serve (PostgreSQL) + {args.workers} deltaflow worker(s): {args.runs} runs "
        f"of one pipeline (allow_concurrent), triggered by {args.clients} clients, "
        f"{args.warehouse} warehouse, {args.repeat} round(s)"
    )
    rounds = [one_round(args, n + 1) for n in range(args.repeat)]
    summary(rounds)


if __name__ == "__main__":
    main()
