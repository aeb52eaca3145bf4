"""The run queue in PostgreSQL: procrastinate jobs beside the service's own tables.

A run and its job are written in one transaction. The state store calls
:meth:`ProcrastinateQueue.write_job` inside each transaction that queues a run (a
trigger, the retry of a lost run, a run handed back; ``ServiceStore.on_queued``), and
procrastinate defers the job on that same psycopg connection: ``configure(connection=)``
of its ``SyncPsycopgConnector`` runs its ``procrastinate_defer_jobs`` SQL function there
and leaves the commit to us. So a run is never queued without its job, and no job is
left for a run that was not recorded. The job's ``queueing_lock`` is the run id: one run
never waits in the queue twice.

``deltaflow worker`` processes (``deltaflow.server.pg_worker``) run the jobs. Any process
of the set-up (the service and every worker) sweeps for lost runs: a
:class:`LeaseSweeper` thread calls ``ops.workers.recover_lost_runs``, whose conditional
UPDATE lets exactly one process record a loss and queue its retry.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, text

from deltaflow.ops.service import Service
from deltaflow.ops.workers import recover_lost_runs

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("deltaflow.service.queue")

TASK = "deltaflow.execute_run"
"""The procrastinate task a worker runs: ``execute_run(run_id)``."""
QUEUE = "deltaflow_runs"
#: a fixed key for the advisory lock held while procrastinate's schema is installed
_SCHEMA_LOCK = 0x64656C7461666C6F


def install_schema(svc: Service) -> None:
    """Create procrastinate's tables and functions in the state database unless they are
    there; an advisory lock lets one of several starting processes do it."""
    from procrastinate.schema import SchemaManager

    with svc.store.engine.begin() as con:
        con.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        if con.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
            # no parameters: psycopg sends the script's many statements as they are
            _driver(con).execute(SchemaManager.get_schema())
            log.info("installed procrastinate's schema in the state database")


def queue_ready(svc: Service) -> bool:
    """Whether the state database answers and holds the queue's tables."""
    with svc.store.engine.connect() as con:
        return con.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None


class JobWriter:
    """Defers a run's job on the connection of the transaction that queues the run."""

    def __init__(self) -> None:
        import procrastinate

        # never opened: every job is deferred on the store's own connection
        self.app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())

    def __call__(self, con: Connection, run_id: str) -> None:
        self.app.configure_task(
            TASK, queue=QUEUE, queueing_lock=run_id, connection=_driver(con)
        ).defer(run_id=run_id)


class LeaseSweeper:
    """A thread that records lost runs (and queues their retries) every ``period`` s."""

    def __init__(self, svc: Service, name: str):
        self.svc = svc
        self.period = max(0.05, min(svc.lease.total_seconds() / 4, 15.0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sweep, name=f"{name}/sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _sweep(self) -> None:
        while True:
            try:
                for retry in recover_lost_runs(self.svc):
                    log.warning("run %s queued again as %s", retry.retry_of, retry.run_id)
            except Exception:  # the database is away: sweep again next period
                log.exception("recovering lost runs failed")
            if self._stop.wait(self.period):
                return


class ProcrastinateQueue:
    """The service's side of the PostgreSQL queue: jobs are written with their runs,
    separate ``deltaflow worker`` processes run them; this process sweeps for lost runs."""

    def __init__(self, svc: Service):
        self.svc = svc
        install_schema(svc)
        svc.store.on_queued = JobWriter()
        self.sweeper = LeaseSweeper(svc, "service")

    def enqueue(self, run_id: str) -> None:
        """Nothing left to do: the run's job was deferred in the run's transaction."""

    def start(self) -> None:
        """Sweep for lost runs; the runs left queued kept their jobs in the database."""
        self.sweeper.start()

    def stop(self, graceful: bool = True) -> None:
        """Stop sweeping; the workers, in their own processes, stop on their own signal."""
        self.sweeper.stop()

    def alive(self) -> bool:
        try:
            return self.sweeper.alive() and queue_ready(self.svc)
        except Exception:
            log.warning("readiness: the queue's tables do not answer", exc_info=True)
            return False


def _driver(con: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy connection (its transaction included)."""
    driver = con.connection.driver_connection
    assert driver is not None  # the connection is open: a transaction runs on it
    return cast("psycopg.Connection[Any]", driver)
