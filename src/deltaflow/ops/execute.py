"""Execute one queued run of the service: what a worker does with a run id.

The run is claimed (queued -> running), its pipeline loaded in the tenant's run context
with the request's variables, and run by the orchestration runner (``ops.run``). While it
runs, a heartbeat renews the worker's lease and picks up a cancel request; the sync
loop's observer stops the run at the next batch boundary when asked. The outcome, the
steps, the rows and the error are recorded in the service store with the run's log lines,
and in the tenant's metadata tables in its warehouse (``ops.tenant_meta``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from deltaflow.config.secrets import redact
from deltaflow.errors import Code, DeltaFlowError, RunCancelledError, StepFailedError
from deltaflow.metadata.service_records import ServiceRun, ServiceStep, now
from deltaflow.metadata.store import StepRecord
from deltaflow.ops.service import Service
from deltaflow.ops.tenant_meta import record_run

log = logging.getLogger("deltaflow.service.run")

Flush = Callable[[], None]


class HandedBack(StepFailedError):
    """The worker is stopping: the run stops at a batch boundary and goes back to the
    queue (its load rolled back, so a rerun neither loses nor duplicates rows)."""

    code = Code.RUN_CANCELLED


@dataclass
class Signals:
    """What a running run listens to: a cancel request, a hand-back, the loss of its
    lease (recorded lost while it ran: it stops, its retry owns the pipeline)."""

    cancel: threading.Event = field(default_factory=threading.Event)
    hand_back: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)


class StopObserver:
    """The sync loop's observer: raises at a batch boundary once the run must stop."""

    def __init__(self, signals: Signals):
        self.signals = signals

    def stream_started(self, stream: str, total_rows: int | None) -> None:
        self._check()

    def rows_read(self, stream: str, rows: int) -> None:
        self._check()

    def stream_finished(self, stream: str) -> None:
        pass

    def _check(self) -> None:
        if self.signals.hand_back.is_set():
            raise HandedBack("the worker stopped; the run goes back to the queue")
        if self.signals.lost.is_set():
            raise HandedBack("the run was recorded lost (its lease ran out); its retry reruns it")
        if self.signals.cancel.is_set():
            raise RunCancelledError(
                "the run was cancelled on request", hint="trigger the pipeline again to rerun"
            )


def execute_run(
    svc: Service, run_id: str, worker_id: str, hand_back: threading.Event | None = None
) -> ServiceRun | None:
    """Claim and run a queued run; None when it is no longer queued (cancelled or taken).
    ``hand_back`` set while it runs returns it to the queue at the next batch boundary."""
    run = svc.store.claim_run(run_id, worker_id)
    if run is None:
        return None
    signals = Signals(hand_back=hand_back or threading.Event())
    steps: list[ServiceStep] = []
    with _captured_logs(svc, run_id) as flush, _heartbeat(svc, run, signals, flush):
        log.info("run %s of %s started on %s", run_id, run.pipeline_path, worker_id)
        try:
            steps = _run(svc, run, signals)
        except Exception as exc:  # a run that blew up is recorded, never left running
            log.exception("run %s failed unexpectedly", run_id)
            _record_error(run, exc)
        log.info("run %s %s", run_id, "handed back" if run.status == "queued" else run.status)
    if run.status == "queued":
        svc.store.release_run(run_id, worker_id)
    elif not svc.store.holds(run_id, worker_id):
        log.warning("run %s was recorded lost while %s ran it; its retry stands", run_id, worker_id)
    else:
        record_run(svc, run, steps)  # first: a run shown as ended is in the tenant's tables
        svc.store.finish_run(run, steps)
    return run


def _run(svc: Service, run: ServiceRun, signals: Signals) -> list[ServiceStep]:
    """Load and run the pipeline; the outcome is written into ``run``."""
    from deltaflow.config.loader import RunContext
    from deltaflow.ops._pipeline import load
    from deltaflow.ops.run import PreparedRun, RunRequest, execute
    from deltaflow.ops.service_pipelines import pipeline_file

    asked = run.request
    date = dt.date.fromisoformat(asked["date"]) if asked.get("date") else None
    variables = {str(k): str(v) for k, v in (asked.get("variables") or {}).items()}
    file = pipeline_file(svc, run.tenant_id, run.pipeline_path)
    request = RunRequest(
        pipeline=str(file),
        variables=variables,
        steps=list(asked.get("steps") or []),
        tenant=run.tenant_id,
        run_date=date,
        metadata=svc.run_store,
    )
    context = RunContext(tenant_id=run.tenant_id, run_id=run.run_id, run_date=date)
    loaded = load(str(file), None, variables, context)
    result = execute(PreparedRun(request, loaded, context), StopObserver(signals))
    steps = [_step(s) for s in result.steps]
    run.pipeline_id = result.run.pipeline_id
    run.rows_read, run.rows_loaded = result.run.rows_read, result.run.rows_loaded
    run.rows_quarantined = sum(int(s.details.get("quarantined", 0) or 0) for s in steps)
    if isinstance(result.error, HandedBack):
        run.status = "queued"
    elif result.error is not None:
        _record_error(run, result.error)
    else:
        run.status = "succeeded"
    run.ended_at = now()
    return steps


def _record_error(run: ServiceRun, exc: BaseException) -> None:
    """The run failed (or was cancelled) with this error: code, category, message, hint."""
    error = exc if isinstance(exc, DeltaFlowError) else None
    run.status = "cancelled" if isinstance(exc, RunCancelledError) else "failed"
    if error is not None:
        run.error_code, run.error_category = str(error.code), error.category
        run.error_message, run.error_hint = redact(error.message), error.hint
    else:
        run.error_code, run.error_category = str(Code.INTERNAL_ERROR), "internal"
        run.error_message = redact(f"{type(exc).__name__}: {exc}")
        run.error_hint = "this is unexpected; the service log has the details"
    run.ended_at = now()


def _step(record: StepRecord) -> ServiceStep:
    return ServiceStep(
        run_id=record.run_id,
        step_id=record.step_id,
        position=record.position,
        type=record.step_type,
        status=record.status,
        started_at=record.started_at,
        ended_at=record.ended_at,
        duration_s=record.duration_s,
        rows_read=record.rows_read,
        rows_loaded=record.rows_loaded,
        details=record.details,
        error_code=record.error_code,
        error_message=record.error_message,
    )


class _RunLogs(logging.Handler):
    """Keeps the records logged on one thread (the run's) as (at, level, message)."""

    def __init__(self, thread: int):
        super().__init__(logging.INFO)
        self.thread = thread
        self.lines: list[tuple[str, str, str]] = []
        self.taken = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        line = (now(), record.levelname, redact(record.getMessage()))
        with self.taken:
            self.lines.append(line)

    def take(self) -> list[tuple[str, str, str]]:
        with self.taken:
            lines, self.lines = self.lines, []
        return lines


@contextmanager
def _captured_logs(svc: Service, run_id: str) -> Iterator[Flush]:
    """Collect this thread's log records; ``flush()`` writes them to the run's log."""
    handler = _RunLogs(threading.get_ident())
    root = logging.getLogger("deltaflow")
    root.addHandler(handler)

    def flush() -> None:
        svc.store.add_logs(run_id, handler.take())

    try:
        yield flush
    finally:
        root.removeHandler(handler)
        flush()


@contextmanager
def _heartbeat(svc: Service, run: ServiceRun, signals: Signals, flush: Flush) -> Iterator[None]:
    """Renew the lease every ``heartbeat_s`` seconds, note a cancel request, write logs."""
    done = threading.Event()
    worker = run.worker_id or ""

    def beat() -> None:
        while not done.wait(svc.heartbeat_s):
            try:
                beat = svc.store.heartbeat(run.run_id, worker)
                if beat.cancel:
                    signals.cancel.set()
                if not beat.held:  # recorded lost (a missed lease): the retry owns the run
                    signals.lost.set()
                flush()
            except Exception:  # a missed beat is retried; the lease allows several
                logging.getLogger("deltaflow.service").warning(
                    "heartbeat of run %s failed", run.run_id, exc_info=True
                )

    thread = threading.Thread(target=beat, name=f"heartbeat-{run.run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
