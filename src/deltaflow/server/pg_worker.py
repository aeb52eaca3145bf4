"""``deltaflow worker``: a process that takes runs from the PostgreSQL queue and runs them.

procrastinate's worker fetches the jobs (LISTEN/NOTIFY, polling as a fallback) and runs
each one, ``execute_run(run_id)`` of ``ops.execute``, on a thread, up to ``concurrency``
at once. ``execute_run`` claims the run (so a run is executed once even if a job ran
twice), heartbeats it every ``heartbeat_s`` and records its outcome. A
:class:`~deltaflow.server.pg_queue.LeaseSweeper` records the runs of lost workers.

SIGTERM (or SIGINT) stops taking jobs and lets the running runs finish for ``drain_s``
seconds; what still runs then is handed back at its next batch boundary: the run is
queued again and a new job deferred with it (``ServiceStore.on_queued``), for another
worker, its load rolled back. A second signal hands back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from deltaflow.ops.execute import execute_run
from deltaflow.ops.service import Service
from deltaflow.server.pg_queue import QUEUE, TASK, JobWriter, LeaseSweeper, install_schema
from deltaflow.server.settings import ServerSettings, open_service

if TYPE_CHECKING:
    import procrastinate

log = logging.getLogger("deltaflow.service.worker")


def worker_name() -> str:
    """This process's name in the runs it holds: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(settings: ServerSettings) -> None:
    """Run jobs until a signal stops the worker; ``settings.workers`` is its concurrency."""
    svc = open_service(settings)
    name = worker_name()
    try:
        install_schema(svc)
        svc.store.on_queued = JobWriter()  # hand-backs and retries queue their jobs
        sweeper = LeaseSweeper(svc, name)
        sweeper.start()
        try:
            asyncio.run(_work(svc, settings, name))
        finally:
            sweeper.stop()
    finally:
        svc.store.close()


async def _work(svc: Service, settings: ServerSettings, name: str) -> None:
    import procrastinate

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(settings.workers, thread_name_prefix=name))
    hand_back = threading.Event()
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=_conninfo(settings), min_size=1, max_size=4
        )
    )

    @app.task(name=TASK, queue=QUEUE, pass_context=True)
    def execute(context: procrastinate.JobContext, run_id: str) -> None:
        execute_run(svc, run_id, f"{name}/job-{context.job.id}", hand_back)

    async with app.open_async():
        work = asyncio.create_task(
            app.run_worker_async(
                queues=[QUEUE],
                name=name,
                concurrency=settings.workers,
                install_signal_handlers=False,
                delete_jobs="successful",
                fetch_job_polling_interval=2.0,
            )
        )
        stop = _Stop(work, hand_back, settings.drain_s)
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop)
        with contextlib.suppress(asyncio.CancelledError):
            await work
    log.info("worker %s stopped", name)


class _Stop:
    """The signal handler: first stop taking jobs and start the grace period, then (or on
    a second signal) hand the running runs back."""

    def __init__(self, work: asyncio.Task[None], hand_back: threading.Event, drain_s: float):
        self.work, self.hand_back, self.drain_s = work, hand_back, drain_s
        self.asked = False

    def __call__(self) -> None:
        if self.asked:
            log.warning("stopping now: running runs go back to the queue")
            self.hand_back.set()
            return
        self.asked = True
        log.warning("stopping: running runs may finish for %.0f s", self.drain_s)
        self.work.cancel()  # procrastinate stops fetching and waits for the running jobs
        asyncio.get_running_loop().call_later(self.drain_s, self.hand_back.set)


def _conninfo(settings: ServerSettings) -> str:
    """The state database as a libpq URL (procrastinate's psycopg pool takes that)."""
    url = make_url(settings.database_url()).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)
