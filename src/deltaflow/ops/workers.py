"""The embedded run queue: worker threads in the service's own process.

Runs are handed on by id (:meth:`EmbeddedWorkers.enqueue`); on start the pool takes up
the runs left queued in the store. A janitor marks runs whose worker stopped
heartbeating (its process died) failed with ``WORKER_LOST`` and queues a retry while
attempts remain. Stopping gracefully lets running runs finish for a while, then hands
them back to the queue at their next batch boundary.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import uuid
from dataclasses import replace

from deltaflow.errors import Code
from deltaflow.metadata.service_records import ServiceRun, now
from deltaflow.ops.execute import execute_run
from deltaflow.ops.service import Service
from deltaflow.ops.tenant_meta import record_run

log = logging.getLogger("deltaflow.service.workers")

LOST_MESSAGE = "the worker running this run stopped heartbeating (its process or machine was lost)"


def recover_lost_runs(svc: Service) -> list[ServiceRun]:
    """Mark every run whose lease expired failed (``WORKER_LOST``); return the retries
    queued for those with attempts left."""
    retries = []
    for run in svc.store.expired_runs(svc.lease):
        lost = replace(
            run,
            status="failed",
            ended_at=now(),
            error_code=str(Code.WORKER_LOST),
            error_category="WORKER_LOST",
            error_message=f"{LOST_MESSAGE}: {run.worker_id}",
            error_hint="the run is retried when attempts remain; otherwise trigger it again",
        )
        retry = _retry(run) if run.attempt < run.max_attempts else None
        if svc.store.fail_lost_run(lost, retry):
            log.warning("run %s lost its worker %s", run.run_id, run.worker_id)
            record_run(svc, lost, [])
            if retry is not None:
                retries.append(retry)
    return retries


def _retry(run: ServiceRun) -> ServiceRun:
    return ServiceRun(
        run_id=uuid.uuid4().hex,
        tenant_id=run.tenant_id,
        pipeline_path=run.pipeline_path,
        pipeline_id=run.pipeline_id,
        status="queued",
        trigger_type="retry",
        request=run.request,
        attempt=run.attempt + 1,
        max_attempts=run.max_attempts,
        retry_of=run.run_id,
    )


class EmbeddedWorkers:
    """``workers`` threads taking run ids from an in-process queue."""

    def __init__(self, svc: Service, workers: int = 2, drain_s: float = 30.0):
        self.svc = svc
        self.workers = max(1, workers)
        self.drain_s = drain_s
        """How long a graceful stop lets running runs finish before handing them back."""
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._hand_back = threading.Event()
        self._stopping = threading.Event()

    def enqueue(self, run_id: str) -> None:
        self._queue.put(run_id)

    def start(self) -> None:
        """Recover lost runs, take up queued ones, start the workers and the janitor."""
        self._recover()
        for run_id in self.svc.store.queued_run_ids():
            self.enqueue(run_id)
        for number in range(self.workers):
            worker_id = f"{self.name}/{number}"
            thread = threading.Thread(target=self._work, args=(worker_id,), name=worker_id)
            self._threads.append(thread)
        janitor = threading.Thread(target=self._watch, name=f"{self.name}/janitor", daemon=True)
        for thread in self._threads:
            thread.start()
        janitor.start()

    def stop(self, graceful: bool = True) -> None:
        """Take no more runs; let running ones finish (up to ``drain_s`` when graceful),
        then hand back what still runs."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        if graceful:
            for thread in self._threads:
                thread.join(self.drain_s)
        self._hand_back.set()
        for thread in self._threads:
            thread.join()

    def alive(self) -> bool:
        return (
            not self._stopping.is_set()
            and bool(self._threads)
            and all(t.is_alive() for t in self._threads)
        )

    def _work(self, worker_id: str) -> None:
        while not self._stopping.is_set():
            run_id = self._queue.get()
            if run_id is None:
                return
            try:
                execute_run(self.svc, run_id, worker_id, self._hand_back)
            except Exception:  # the store was unreachable: the janitor recovers the run
                log.exception("worker %s could not execute run %s", worker_id, run_id)

    def _watch(self) -> None:
        period = max(0.05, min(self.svc.lease.total_seconds() / 4, 15.0))
        while not self._stopping.wait(period):
            self._recover()

    def _recover(self) -> None:
        try:
            for retry in recover_lost_runs(self.svc):
                self.enqueue(retry.run_id)
        except Exception:
            log.exception("recovering lost runs failed")
