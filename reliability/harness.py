"""Crash harness for incremental sync: kill the sync while the source changes, then check
that the destination holds every source row exactly once.

    .venv/bin/python reliability/harness.py --trials 100
    .venv/bin/python reliability/harness.py --trials 10 --seed 7 --dsn postgresql://...

Without ``--dsn`` it starts its own PostgreSQL server (as the tests do). Each trial gets
its own schema in that database and its own DuckDB file:

1. a source table ``items (id, payload, updated_at)`` with some rows;
2. writer threads that keep inserting rows in small statements sharing one ``now()``
   (ties at the cursor), updating random rows (``clock_timestamp()``), and committing
   "late": a transaction takes its cursor, then sleeps 0.2-2 s before it commits, so
   rows with newer cursors commit meanwhile (inside the 10 s ``lookback``);
3. meanwhile, ``python -m deltaflow run`` in a child process, several times: killed at
   a named crash point (``DELTAFLOW_CRASH_AT``), killed with SIGKILL after a random
   delay, or left to complete;
4. the writer stops (its open transactions commit), the sync runs to completion twice
   (in this process), and source and destination are compared row by row.

The sync is PostgreSQL -> DuckDB on even trials and PostgreSQL -> PostgreSQL (another
table of the same database) on odd ones, ``write_mode: merge`` on ``id`` with
``incremental: {cursor: updated_at, lookback: 10s}``.

Exit status 1 when a row is lost or duplicated, or when a trial could not be checked.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
Row = tuple[int, str | None, int]
"""id, payload, updated_at in microseconds since the epoch (UTC)."""
DESTINATIONS = ("duckdb", "postgres")


@dataclass(frozen=True)
class TrialConfig:
    """The shape of a trial; the defaults keep one trial to a few seconds."""

    initial_rows: int = 1000
    runs: int = 3
    """Sync runs while the writer is active (each completes or is killed)."""
    crash_share: float = 0.35
    """Share of those runs killed at a named crash point."""
    kill_share: float = 0.35
    """Share killed with SIGKILL after a random delay; the rest complete."""
    max_kill_delay: float = 1.5
    late_writers: int = 2
    late_delay: tuple[float, float] = (0.2, 2.0)
    """How long a late transaction waits between taking its cursor and committing."""
    run_timeout: float = 60.0
    lookback: str = "10s"
    """The step's lookback; it must exceed the longest late delay (the documented limit)."""


@dataclass
class RunOutcome:
    """One sync run during a trial."""

    intent: str  # "complete", "crash:<point>" or "kill"
    result: str  # "completed", "killed", "failed" or "not_reached"
    seconds: float
    delay: float | None = None
    detail: str = ""

    def label(self) -> str:
        """``ok``, ``mid_load`` (killed there), ``kill@0.42s``, ``kill@1.40s:completed``..."""
        if self.intent == "complete":
            return "ok" if self.result == "completed" else self.result
        suffix = "" if self.result == "killed" else f":{self.result}"
        if self.intent == "kill":
            return f"kill@{self.delay or 0.0:.2f}s{suffix}"
        return self.intent.split(":", 1)[1] + suffix


@dataclass
class TrialResult:
    index: int
    destination: str
    runs: list[RunOutcome] = field(default_factory=list)
    writer: dict[str, int] = field(default_factory=dict)
    max_commit_lag: float = 0.0
    """The longest time between a writer statement's cursor and its commit (seconds)."""
    source_rows: int = 0
    destination_rows: int = 0
    lost: int = 0
    """Source rows missing from the destination or different there (includes changed)."""
    changed: int = 0
    """Source rows present in the destination with different values."""
    duplicated: int = 0
    """Extra copies of a key in the destination, and rows that are not in the source."""
    examples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    kept: Path | None = None

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.errors)

    def line(self) -> str:
        runs = ", ".join(r.label() for r in self.runs)
        text = (
            f"trial {self.index:3d} {self.destination:8s} runs [{runs}] "
            f"rows {self.source_rows} lost {self.lost} duplicated {self.duplicated} "
            f"changed {self.changed} late<={self.max_commit_lag:.2f}s {self.seconds:.1f}s"
        )
        if self.errors:
            text += f" ERRORS: {'; '.join(self.errors)}"
        if self.kept is not None:
            text += f" (kept: {self.kept})"
        return text


@dataclass
class Report:
    seed: int
    config: TrialConfig
    trials: list[TrialResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return sum(t.lost for t in self.trials)

    @property
    def duplicated(self) -> int:
        return sum(t.duplicated for t in self.trials)

    @property
    def changed(self) -> int:
        return sum(t.changed for t in self.trials)

    @property
    def rows_compared(self) -> int:
        return sum(t.source_rows for t in self.trials)

    @property
    def errors(self) -> list[str]:
        return [f"trial {t.index}: {e}" for t in self.trials for e in t.errors]

    def _runs(self) -> Iterator[RunOutcome]:
        return (r for t in self.trials for r in t.runs)

    @property
    def kills_by_point(self) -> Counter[str]:
        return Counter(
            r.intent.split(":", 1)[1]
            for r in self._runs()
            if r.intent.startswith("crash:") and r.result == "killed"
        )

    @property
    def random_kills(self) -> int:
        return sum(1 for r in self._runs() if r.intent == "kill" and r.result == "killed")

    @property
    def completed(self) -> int:
        """Runs that finished: asked to, or done before their random kill came."""
        return sum(1 for r in self._runs() if r.result == "completed")

    def summary(self) -> str:
        points = ", ".join(f"{p} {n}" for p, n in sorted(self.kills_by_point.items()))
        by_destination = Counter(t.destination for t in self.trials)
        lag = max((t.max_commit_lag for t in self.trials), default=0.0)
        return "\n".join(
            [
                f"trials:            {len(self.trials)} (seed {self.seed}; "
                + ", ".join(f"{d} {n}" for d, n in sorted(by_destination.items()))
                + ")",
                f"kills at points:   {sum(self.kills_by_point.values())} ({points or 'none'})",
                f"random kills:      {self.random_kills}",
                f"completed runs:    {self.completed} (during writes)",
                f"rows compared:     {self.rows_compared}",
                f"lost:              {self.lost} (of which changed: {self.changed})",
                f"duplicated:        {self.duplicated}",
                f"errors:            {len(self.errors)}",
                f"longest late commit: {lag:.2f}s (lookback {self.config.lookback})",
                f"seconds:           {self.seconds:.1f}",
            ]
        )


# --------------------------------------------------------------------------- writer


class Writer:
    """Changes the source table until stopped, from threads with their own connections.

    One thread inserts small batches sharing one ``now()`` and updates random rows; each
    late thread holds a transaction open for a random delay after taking its cursor.
    ``stop()`` ends the delays, and returns once every open transaction has committed.
    """

    def __init__(self, dsn: str, table: str, first_id: int, seed: int, config: TrialConfig):
        self.dsn, self.table, self.config = dsn, table, config
        self.seed = seed
        self.ids = list(range(1, first_id))
        self.next_id = first_id
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.counts: Counter[str] = Counter()
        self.max_lag = 0.0
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        loops: list[Callable[[random.Random], None]] = [self._steady]
        loops += [self._late] * self.config.late_writers
        for number, loop in enumerate(loops):
            rng = random.Random(f"{self.seed}/writer/{number}")
            thread = threading.Thread(target=self._guarded, args=(loop, rng), daemon=True)
            self.threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        deadline = time.monotonic() + 30
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self.errors.append("a writer thread did not stop within 30 s")

    def _guarded(self, loop: Callable[[random.Random], None], rng: random.Random) -> None:
        try:
            loop(rng)
        except Exception as exc:
            self.errors.append(f"writer: {type(exc).__name__}: {exc}")

    def _new_ids(self, count: int) -> list[int]:
        with self.lock:
            first = self.next_id
            self.next_id += count
        return list(range(first, first + count))

    def _existing(self, rng: random.Random, count: int) -> list[int]:
        with self.lock:
            return sorted(set(rng.choices(self.ids, k=count)))

    def _committed(self, kind: str, cursors: list[Any], new_ids: Sequence[int] = ()) -> None:
        lag = max((time.time() - c.timestamp() for c in cursors), default=0.0)
        with self.lock:
            self.ids.extend(new_ids)
            self.counts[kind] += 1
            self.max_lag = max(self.max_lag, lag)

    def _steady(self, rng: random.Random) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as con:
            while not self.stopping.is_set():
                action = rng.random()
                if action < 0.45:  # several rows in one statement: one now(), a tie
                    ids = self._new_ids(rng.randint(1, 6))
                    cursors = con.execute(
                        f"INSERT INTO {self.table} (id, payload, updated_at) "
                        "SELECT i, 'new ' || i || ' ' || %s, now() FROM unnest(%s::bigint[]) i "
                        "RETURNING updated_at",
                        (_token(rng), ids),
                    ).fetchall()
                    self._committed("inserts", [c for (c,) in cursors], ids)
                elif action < 0.85:
                    (cursor,) = con.execute(
                        f"UPDATE {self.table} SET payload = %s, updated_at = clock_timestamp() "
                        "WHERE id = %s RETURNING updated_at",
                        (f"upd {_token(rng)}", self._existing(rng, 1)[0]),
                    ).fetchone() or (None,)
                    self._committed("updates", [cursor] if cursor else [])
                else:  # a few rows updated in one statement: one now(), a tie
                    cursors = con.execute(
                        f"UPDATE {self.table} SET payload = 'tie ' || id || ' ' || %s, "
                        "updated_at = now() WHERE id = ANY(%s) RETURNING updated_at",
                        (_token(rng), self._existing(rng, rng.randint(2, 5))),
                    ).fetchall()
                    self._committed("tied_updates", [c for (c,) in cursors])
                self.stopping.wait(rng.uniform(0.01, 0.04))

    def _late(self, rng: random.Random) -> None:
        low, high = self.config.late_delay
        with psycopg.connect(self.dsn, autocommit=True) as con:
            while not self.stopping.is_set():
                new_ids: list[int] = []
                with con.transaction():
                    if rng.random() < 0.5:
                        new_ids = self._new_ids(1)
                        row = con.execute(
                            f"INSERT INTO {self.table} (id, payload, updated_at) "
                            "VALUES (%s, %s, clock_timestamp()) RETURNING updated_at",
                            (new_ids[0], f"late new {_token(rng)}"),
                        ).fetchone()
                    else:
                        row = con.execute(
                            f"UPDATE {self.table} SET payload = %s, "
                            "updated_at = clock_timestamp() WHERE id = %s RETURNING updated_at",
                            (f"late upd {_token(rng)}", self._existing(rng, 1)[0]),
                        ).fetchone()
                    # Rows with newer cursors commit meanwhile; a stop commits at once.
                    self.stopping.wait(rng.uniform(low, high))
                self._committed("late_commits", [row[0]] if row else [], new_ids)
                self.stopping.wait(rng.uniform(0.0, 0.05))


def _token(rng: random.Random) -> str:
    return f"{rng.getrandbits(40):010x}"


# --------------------------------------------------------------------------- one trial


def _pipeline(dsn: str, schema: str, destination: str, index: int, lookback: str) -> str:
    if destination == "duckdb":
        target = "{connection: wh, table: raw.items, write_mode: merge, primary_key: [id]}"
    else:
        target = (
            f"{{connection: pg, table: {schema}.items_copy, write_mode: merge, primary_key: [id]}}"
        )
    return textwrap.dedent(f"""\
        pipeline_id: reliability_{index}
        connections:
          pg: {{type: postgres, dsn: "{dsn}"}}
          wh: {{type: duckdb, path: wh.duckdb}}
        steps:
          - step_id: items
            type: sync
            source: {{connection: pg, table: {schema}.items}}
            destination: {target}
            incremental: {{cursor: updated_at, lookback: {lookback}}}
        """)


def _child_env(crash_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DELTAFLOW_CRASH_AT"}
    if crash_at:
        env["DELTAFLOW_CRASH_AT"] = crash_at
    return env


def run_child(
    pipeline: Path,
    intent: str,
    delay: float | None,
    timeout: float,
) -> RunOutcome:
    """``python -m deltaflow run`` as a child: left alone, crashed at a named point, or
    killed with SIGKILL after ``delay`` seconds. A kill must show as death by signal 9."""
    crash_at = intent.split(":", 1)[1] if intent.startswith("crash:") else None
    command = [
        sys.executable,
        "-m",
        "deltaflow",
        "run",
        str(pipeline),
        "--quiet",
        "--metadata",
        str(pipeline.parent / "runs.db"),
    ]
    started = time.monotonic()
    with subprocess.Popen(
        command,
        cwd=pipeline.parent,
        env=_child_env(crash_at),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        wait = delay if intent == "kill" and delay is not None else timeout
        try:
            _, stderr = child.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            _, stderr = child.communicate()
            if intent != "kill":
                return RunOutcome(intent, "failed", time.monotonic() - started, delay, "hung")
    seconds = time.monotonic() - started
    code = child.returncode
    if code == -signal.SIGKILL and intent != "complete":
        return RunOutcome(intent, "killed", seconds, delay)
    if code == 0:
        # A random kill that came after the run finished; a crash point a run did not reach.
        result = "not_reached" if crash_at else "completed"
        return RunOutcome(intent, result, seconds, delay)
    tail = " | ".join((stderr or "").strip().splitlines()[-3:])
    return RunOutcome(intent, "failed", seconds, delay, f"exit {code}: {tail}")


def _choose_intent(rng: random.Random, config: TrialConfig) -> tuple[str, float | None]:
    from deltaflow.faults import POINTS

    draw = rng.random()
    if draw < config.crash_share:
        return f"crash:{rng.choice(POINTS)}", None
    if draw < config.crash_share + config.kill_share:
        return "kill", round(rng.uniform(0.0, config.max_kill_delay), 3)
    return "complete", None


def run_trial(
    dsn: str, workdir: Path, index: int, seed: int, config: TrialConfig | None = None
) -> TrialResult:
    """One trial in its own schema of ``dsn``'s database and its own directory."""
    config = config or TrialConfig()
    rng = random.Random(f"{seed}/{index}")
    destination = DESTINATIONS[index % len(DESTINATIONS)]
    trial = TrialResult(index, destination)
    started = time.monotonic()
    schema = f"reliability_{index}"
    directory = workdir / f"trial-{index:04d}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    pipeline = directory / "pipeline.yml"
    pipeline.write_text(_pipeline(dsn, schema, destination, index, config.lookback))
    _create_source(dsn, schema, config.initial_rows)

    writer = Writer(dsn, f"{schema}.items", config.initial_rows + 1, rng.getrandbits(32), config)
    writer.start()
    try:
        for _ in range(config.runs):
            intent, delay = _choose_intent(rng, config)
            outcome = run_child(pipeline, intent, delay, config.run_timeout)
            trial.runs.append(outcome)
            if outcome.result in ("failed", "not_reached"):
                trial.errors.append(f"run {outcome.label()}: {outcome.detail or 'exit 0'}")
    finally:
        writer.stop()
    trial.writer = dict(writer.counts)
    trial.max_commit_lag = writer.max_lag
    trial.errors += writer.errors

    for _ in range(2):  # to completion, nothing changing any more
        error = run_in_process(pipeline)
        if error:
            trial.errors.append(f"final run: {error}")
    if not any(e.startswith("final run") for e in trial.errors):
        compare(trial, dsn, schema, directory)
    trial.seconds = time.monotonic() - started
    if trial.ok:
        shutil.rmtree(directory, ignore_errors=True)
        _sql(dsn, f"DROP SCHEMA {schema} CASCADE")
    else:
        trial.kept = directory
    return trial


def _create_source(dsn: str, schema: str, rows: int) -> None:
    _sql(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    _sql(dsn, f"CREATE SCHEMA {schema}")
    _sql(
        dsn,
        f"CREATE TABLE {schema}.items "
        "(id bigint PRIMARY KEY, payload text, updated_at timestamptz NOT NULL)",
    )
    _sql(dsn, f"CREATE INDEX ON {schema}.items (updated_at)")
    # Spread over the last minute, some of them tied.
    _sql(
        dsn,
        f"INSERT INTO {schema}.items SELECT g, 'initial ' || g, "
        "now() - make_interval(secs => (g / 3) * 60.0 / %s) FROM generate_series(1, %s) g",
        (max(rows // 3, 1), rows),
    )


def run_in_process(pipeline: Path) -> str | None:
    """Run the pipeline to completion in this process; the error, if it failed."""
    from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline

    result = run_pipeline(
        load_pipeline(pipeline),
        context=RunContext(),
        store=RunStore(pipeline.parent / "runs.db"),
    )
    return None if result.ok else str(result.error)


# --------------------------------------------------------------------------- comparison


def row_hash(key: int, payload: str | None, epoch_us: int) -> str:
    """The md5 of a row's text: id, payload and updated_at as UTC ISO with microseconds."""
    at = EPOCH + dt.timedelta(microseconds=epoch_us)
    text = json.dumps([str(key), payload, at.isoformat(timespec="microseconds")])
    return hashlib.md5(text.encode()).hexdigest()


def source_rows(dsn: str, table: str) -> list[Row]:
    return [
        (int(k), p, int(us))
        for k, p, us in _sql(
            dsn,
            f"SELECT id, payload, (extract(epoch FROM updated_at) * 1000000)::bigint FROM {table}",
        )
    ]


def duckdb_rows(path: Path, table: str) -> list[Row]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(f"SELECT id, payload, epoch_us(updated_at) FROM {table}").fetchall()
    return [(int(k), p, int(us)) for k, p, us in rows]


def compare(trial: TrialResult, dsn: str, schema: str, directory: Path) -> None:
    """Every source key once in the destination, with the same md5 of its row's text."""
    source = {row[0]: row for row in source_rows(dsn, f"{schema}.items")}
    if trial.destination == "duckdb":
        loaded = duckdb_rows(directory / "wh.duckdb", "raw.items")
    else:
        loaded = source_rows(dsn, f"{schema}.items_copy")
    copies: dict[int, list[Row]] = {}
    for row in loaded:
        copies.setdefault(row[0], []).append(row)
    trial.source_rows, trial.destination_rows = len(source), len(loaded)
    for key, row in sorted(source.items()):
        found = copies.get(key)
        if found is None:
            trial.lost += 1
            trial.examples.append(f"id {key}: missing; source {_show(row)}")
        elif row_hash(*row) not in {row_hash(*c) for c in found}:
            trial.lost += 1
            trial.changed += 1
            trial.examples.append(
                f"id {key}: different; source {_show(row)}, destination {_show(found[-1])}"
            )
    for key, found in sorted(copies.items()):
        extra = len(found) - 1 if key in source else len(found)
        if extra:
            trial.duplicated += extra
            trial.examples.append(f"id {key}: {len(found)} copies, {extra} extra")
    del trial.examples[10:]


def _show(row: Row) -> str:
    at = EPOCH + dt.timedelta(microseconds=row[2])
    return f"{row[1]!r} @ {at.isoformat(timespec='microseconds')}"


def _sql(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as con:
        cursor = con.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


# --------------------------------------------------------------------------- trials


def run_trials(
    dsn: str,
    workdir: Path,
    trials: int,
    seed: int,
    config: TrialConfig | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> Report:
    """``trials`` trials against the database of ``dsn``; ``on_trial`` sees each result."""
    report = Report(seed, config or TrialConfig())
    started = time.monotonic()
    for index in range(trials):
        result = run_trial(dsn, workdir, index, seed, report.config)
        report.trials.append(result)
        if on_trial is not None:
            on_trial(result)
    report.seconds = time.monotonic() - started
    return report


def _print_trial(trial: TrialResult) -> None:
    print(trial.line(), flush=True)
    for example in trial.examples:
        print(f"      {example}", flush=True)


@contextlib.contextmanager
def _server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from tests.support.postgres import running_postgres

    with running_postgres() as server:
        yield server.dsn(database="postgres")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dsn", help="use this PostgreSQL database instead of starting one")
    parser.add_argument("--workdir", type=Path, help="where trials keep their files")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deltaflow-reliability-"))
    with _server(args.dsn) as dsn:
        report = run_trials(dsn, workdir, args.trials, args.seed, on_trial=_print_trial)
    print(report.summary())
    if not (report.lost or report.duplicated or report.errors) and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.lost or report.duplicated or report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
