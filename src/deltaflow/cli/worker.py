"""``deltaflow worker``: runs taken from the service's queue in PostgreSQL.

procrastinate and SQLAlchemy are imported inside the command, so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deltaflow.cli._render import err, fail
from deltaflow.errors import ConfigError, DeltaFlowError

if TYPE_CHECKING:
    from deltaflow.server.settings import ServerSettings


def worker(
    database: Annotated[
        str,
        typer.Option(
            envvar="DELTAFLOW_DATABASE",
            help="The service's PostgreSQL database, as given to deltaflow serve "
            "(postgresql://user@host/db).",
            show_default=False,
        ),
    ],
    concurrency: Annotated[
        int, typer.Option(min=1, max=256, help="Runs this process executes at once.")
    ] = 1,
    configs: Annotated[Path, typer.Option(help="Folder of the pipelines tenants may run.")] = Path(
        "configs"
    ),
    state_dir: Annotated[Path, typer.Option(help="Where the worker keeps its files.")] = Path(
        ".deltaflow"
    ),
    lease: Annotated[
        float, typer.Option(min=1.0, help="Seconds without a heartbeat before a run is lost.")
    ] = 60.0,
    grace: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds a running run may finish after SIGTERM."),
    ] = 30.0,
) -> None:
    """Take runs from the PostgreSQL queue of `deltaflow serve --database` and run them."""
    from deltaflow.server.settings import ServerSettings

    settings = ServerSettings(
        database=database,
        configs=configs.resolve(),
        state_dir=state_dir.resolve(),
        workers=concurrency,
        lease_s=lease,
        heartbeat_s=min(5.0, lease / 4),
        drain_s=grace,
        queue="postgres",
    )
    try:
        _check(settings)
    except DeltaFlowError as exc:
        raise fail(exc, 2) from None
    from deltaflow.cli._render import setup_logging
    from deltaflow.server.pg_worker import run_worker, worker_name

    setup_logging(False)
    logger = logging.getLogger("deltaflow")
    for handler in logger.handlers:
        handler.setLevel(logging.WARNING)  # the terminal shows warnings,
    logger.setLevel(logging.INFO)  # while each run's log keeps its INFO lines
    err.print(f"deltaflow worker {worker_name()}: {concurrency} at once, lease {lease:g} s")
    run_worker(settings)


def _check(settings: ServerSettings) -> None:
    if not settings.on_postgres():
        database = settings.database or ""
        scheme = database.split("://", 1)[0] if "://" in database else database[:20]
        raise ConfigError(
            f"deltaflow worker takes runs from a PostgreSQL database, not '{scheme}://...'",
            hint="pass --database postgresql://user@host/db, the database deltaflow serve "
            "keeps its state in; the embedded SQLite set-up runs its workers inside "
            "deltaflow serve (--workers N)",
        )
    if not settings.configs.is_dir():
        raise ConfigError(
            f"the pipeline folder '{settings.configs}' does not exist",
            hint="pass --configs DIR, the folder deltaflow serve was given",
        )
