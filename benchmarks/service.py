"""deltaflow serve under load: trigger latency and status polling of the embedded default.

    .venv/bin/python benchmarks/service.py                    # 3 rounds of 60 s, 50 clients
    .venv/bin/python benchmarks/service.py --seconds 20 --repeat 1 --clients 10   # a quick look

Each round starts ``deltaflow serve`` as a process on a free loopback port with the
embedded default (SQLite state, ``--workers 2`` in-process workers) over a configs folder
of one trivial pipeline per client (a DuckDB sync step of 5 rows into its own file), and
onboards a tenant (its default warehouse) with quotas no client reaches (concurrent runs
= clients) and one ``run`` key per client. Each client triggers its own pipeline, so the
409 rule (one active run per pipeline) never refuses it and no run asks for
``allow_concurrent``; it polls the run's status every ``--poll`` seconds until the run
ends, then triggers again. A prober asks ``/healthz`` of the same server at the same
pace: the peer, the latency of a request that does nothing, under the same load.

After ``--seconds`` the clients stop; every run triggered is then awaited for up to
``--drain`` seconds, and the tenant's run list is read back. An error is any answer other
than 2xx and the designed 409/429, or a request that failed; a lost run is one triggered
and never recorded, recorded twice, or not ended after the drain. Only 127.0.0.1 is
spoken to; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service_common import ADMIN_KEY, ENDED, TENANT, list_runs, pct, start_server, stop

DESIGNED = (409, 429)
#: a client's requests never wait longer than this (then they count as errors)
REQUEST_TIMEOUT_S = 30.0

PIPELINE = """\
pipeline_id: bench-{n:02d}
connections:
  wh:
    type: duckdb
    path: "{path}"
steps:
  - step_id: rows
    type: sync
    source: {{connection: wh, query: "SELECT range AS id, 'row ' || range AS name FROM range(5)"}}
    destination: {{connection: wh, table: raw.rows, write_mode: replace}}
"""


@dataclass
class Tally:
    """What the clients saw during the load."""

    trigger_ms: list[float] = field(default_factory=list)
    status_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    answers: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    triggered: list[str] = field(default_factory=list)
    completed: int = 0
    refused: int = 0

    @property
    def errors(self) -> int:
        bad = sum(n for code, n in self.answers.items() if code >= 300 and code not in DESIGNED)
        return bad + sum(self.failures.values())


@dataclass
class Round:
    """One round's figures."""

    seconds: float
    tally: Tally
    lost: int
    recorded: int
    outcomes: Counter[str]
    log_problems: int
    load: tuple[float, float]
    """The machine's 1-minute load average before and after the round (it is shared)."""

    def figures(self) -> dict[str, float]:
        t = self.tally
        return {
            "requests/s": (len(t.trigger_ms) + len(t.status_ms)) / self.seconds,
            "trigger p50 ms": pct(t.trigger_ms, 50),
            "trigger p99 ms": pct(t.trigger_ms, 99),
            "status p50 ms": pct(t.status_ms, 50),
            "status p99 ms": pct(t.status_ms, 99),
            "healthz p50 ms": pct(t.health_ms, 50),
            "healthz p99 ms": pct(t.health_ms, 99),
            "runs triggered": float(len(t.triggered)),
            "runs completed": float(t.completed),
            "runs/s": t.completed / self.seconds,
            "errors": float(t.errors),
            "lost runs": float(self.lost),
        }


def write_configs(work: Path, clients: int) -> None:
    folder = work / "configs" / "load"  # not the tenant's name: that folder would be its own
    folder.mkdir(parents=True)
    (work / "data").mkdir()
    for n in range(clients):
        path = work / "data" / f"p{n:02d}.duckdb"
        (folder / f"p{n:02d}.yml").write_text(PIPELINE.format(n=n, path=path))


def onboard(url: str, clients: int) -> list[dict[str, str]]:
    """The tenant, and one ``run`` key per client."""
    root = {"X-API-Key": ADMIN_KEY}
    quotas = {
        "concurrent_runs": clients,
        "runs_per_day": 10_000_000,
        "requests_per_minute": 1_000_000,
    }
    with httpx.Client(base_url=url, timeout=60) as http:
        done = http.post(
            "/api/v1/tenants", json={"tenant_id": TENANT, "quotas": quotas}, headers=root
        )
        done.raise_for_status()
        keys = []
        for n in range(clients):
            made = http.post(
                f"/api/v1/tenants/{TENANT}/keys",
                json={"name": f"client {n}", "scopes": ["run"]},
                headers=root,
            )
            made.raise_for_status()
            keys.append({"X-API-Key": made.json()["api_key"]})
    return keys


async def timed(
    http: httpx.AsyncClient, tally: Tally, into: list[float], method: str, path: str, **kw: Any
) -> httpx.Response | None:
    """One request: its latency kept, its answer counted; None when it failed."""
    started = time.perf_counter()
    try:
        answer = await http.request(method, path, **kw)
    except httpx.HTTPError as exc:
        tally.failures[type(exc).__name__] += 1
        return None
    into.append((time.perf_counter() - started) * 1000)
    tally.answers[answer.status_code] += 1
    return answer


async def client(
    http: httpx.AsyncClient, tally: Tally, n: int, key: dict[str, str], end: float, poll: float
) -> None:
    """Trigger pipeline ``n``, poll its run until it ends, again until ``end``."""
    path = f"/api/v1/pipelines/run/{TENANT}/load/p{n:02d}"
    while time.monotonic() < end:
        answer = await timed(http, tally, tally.trigger_ms, "POST", path, json={}, headers=key)
        if answer is None or answer.status_code != 202:
            tally.refused += answer is not None and answer.status_code in DESIGNED
            await asyncio.sleep(poll)
            continue
        run_id = answer.json()["pipeline_logging_id"]
        tally.triggered.append(run_id)
        while time.monotonic() < end:
            await asyncio.sleep(poll)
            seen = await timed(
                http, tally, tally.status_ms, "GET", f"/api/v1/runs/{run_id}", headers=key
            )
            if seen is not None and seen.status_code == 200 and seen.json()["status"] in ENDED:
                tally.completed += 1
                break


async def prober(http: httpx.AsyncClient, tally: Tally, end: float, poll: float) -> None:
    """The peer: ``/healthz`` of the same server at the clients' pace."""
    while time.monotonic() < end:
        await timed(http, tally, tally.health_ms, "GET", "/healthz")
        await asyncio.sleep(poll)


async def load(url: str, keys: list[dict[str, str]], seconds: float, poll: float) -> Tally:
    tally = Tally()
    # idle connections are dropped before uvicorn's 5 s keep-alive ends, so that a request
    # never goes out on a connection the server is closing
    size = len(keys) + 1
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        end = time.monotonic() + seconds
        tasks = [client(http, tally, n, key, end, poll) for n, key in enumerate(keys)]
        await asyncio.gather(prober(http, tally, end, poll), *tasks)
    return tally


def drain(url: str, triggered: list[str], seconds: float) -> tuple[int, int, Counter[str]]:
    """Wait for every triggered run to end; (lost, runs recorded, their outcomes)."""
    root = {"X-API-Key": ADMIN_KEY}
    with httpx.Client(base_url=url, timeout=60) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            listed = list_runs(http, root)
            if all(r["status"] in ENDED for r in listed):
                break
            time.sleep(0.5)
        listed = list_runs(http, root)
    by_id = Counter(r["pipeline_logging_id"] for r in listed)
    missing = [r for r in triggered if by_id[r] != 1]
    unended = [r["pipeline_logging_id"] for r in listed if r["status"] not in ENDED]
    untriggered = set(by_id) - set(triggered)
    outcomes = Counter(r["status"] for r in listed)
    return len(missing) + len(unended) + len(untriggered), len(listed), outcomes


def one_round(args: argparse.Namespace, number: int) -> Round:
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="deltaflow-service-bench-"))
    try:
        write_configs(work, args.clients)
        options = ["--configs", "configs", "--state-dir", "state", "--workers", str(args.workers)]
        process, url = start_server(work, options)
        try:
            keys = onboard(url, args.clients)
            tally = asyncio.run(load(url, keys, args.seconds, args.poll))
            lost, recorded, outcomes = drain(url, tally.triggered, args.drain)
        finally:
            stop(process)
        text = (work / "serve.log").read_text(errors="replace")
        problems = text.count("Traceback") + text.count("ERROR")
        if problems and args.verbose:
            print(text[-4000:])
    finally:
        if args.keep:
            print(f"round {number}: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    loads = (load_before, os.getloadavg()[0])
    done = Round(args.seconds, tally, lost, recorded, outcomes, problems, loads)
    show_round(number, done)
    return done


def show_round(number: int, done: Round) -> None:
    t = done.tally
    figures = done.figures()
    print(f"\nround {number}:")
    for name, value in figures.items():
        print(f"  {name:16s} {value:10.1f}")
    answers = ", ".join(f"{code}: {n}" for code, n in sorted(t.answers.items()))
    print(f"  answers          {answers}; refused (409/429): {t.refused}")
    if t.failures:
        print(f"  failed requests  {dict(t.failures)}")
    print(f"  runs recorded    {done.recorded} ({dict(done.outcomes)})")
    print(f"  server log       {done.log_problems} ERROR/Traceback lines")
    print(f"  machine load     {done.load[0]:.1f} before, {done.load[1]:.1f} after (1-min average)")


def summary(rounds: list[Round]) -> None:
    print(f"\n{len(rounds)} round(s): median (min - max)")
    for name in rounds[0].figures():
        values = [r.figures()[name] for r in rounds]
        low, high = min(values), max(values)
        print(f"  {name:16s} {statistics.median(values):10.1f}  ({low:.1f} - {high:.1f})")
    worst = max(max(r.figures()["trigger p99 ms"], r.figures()["status p99 ms"]) for r in rounds)
    errors = sum(r.tally.errors for r in rounds)
    lost = sum(r.lost for r in rounds)
    met = worst < 100 and errors == 0 and lost == 0
    print(
        f"goal (p99 < 100 ms for trigger and status, 0 errors, 0 lost runs): "
        f"{'met' if met else 'NOT met'} (worst p99 {worst:.1f} ms, {errors} errors, {lost} lost)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per round")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (<= 100)")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between status polls")
    parser.add_argument("--workers", type=int, default=2, help="the service's --workers")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to await open runs")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each on a fresh server")
    parser.add_argument("--keep", action="store_true", help="keep each round's folder")
    parser.add_argument("--verbose", action="store_true", help="show the server log's tail")
    args = parser.parse_args()
    if not 1 <= args.clients <= 100:
        parser.error(f"--clients {args.clients}: give 1 to 100 (loopback load stays bounded)")
    if not 1 <= args.seconds <= 600:
        parser.error(f"--seconds {args.seconds}: give 1 to 600")
    print(
        f"deltaflow serve (SQLite, --workers {args.workers}): {args.clients} clients, "
        f"{args.seconds:g} s, status polled every {args.poll:g} s, {args.repeat} round(s)"
    )
    rounds = [one_round(args, n + 1) for n in range(args.repeat)]
    summary(rounds)


if __name__ == "__main__":
    main()
