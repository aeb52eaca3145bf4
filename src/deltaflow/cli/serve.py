"""``deltaflow serve``: the pipeline service (REST API and its run queue) on uvicorn.

With SQLite state (the default) runs execute on worker threads in this process; with
``--database postgresql://...`` they are queued in that database and executed by
``deltaflow worker`` processes (``deltaflow.cli.worker``).

FastAPI, uvicorn and SQLAlchemy are imported inside the command, so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deltaflow.cli._render import err, fail
from deltaflow.errors import ConfigError, DeltaFlowError

if TYPE_CHECKING:
    from deltaflow.server.settings import ServerSettings


def serve(
    database: Annotated[
        str | None,
        typer.Option(
            envvar="DELTAFLOW_DATABASE",
            help="State database URL, e.g. postgresql://user@host/db "
            "\\[default: SQLite file service.db in --state-dir].",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=256,
            help="Worker threads (SQLite state; with PostgreSQL, `deltaflow worker` processes "
            "run the runs).",
        ),
    ] = 2,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    configs: Annotated[Path, typer.Option(help="Folder of the pipelines tenants may run.")] = Path(
        "configs"
    ),
    state_dir: Annotated[Path, typer.Option(help="Where the service keeps its files.")] = Path(
        ".deltaflow"
    ),
    admin_key_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the root admin key \\[default: $DELTAFLOW_ADMIN_KEY].",
            show_default=False,
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="No keys: local development only, loopback only."),
    ] = False,
    lease: Annotated[
        float, typer.Option(min=1.0, help="Seconds without a heartbeat before a run is lost.")
    ] = 60.0,
) -> None:
    """Start the pipeline service: the REST API under /api/v1 and its workers."""
    try:
        settings = _settings(
            database, workers, configs, state_dir, admin_key_file, no_auth, lease, host
        )
    except DeltaFlowError as exc:
        raise fail(exc, 2) from None
    import uvicorn

    from deltaflow.cli._render import setup_logging
    from deltaflow.server.app import create_app

    setup_logging(False)
    logger = logging.getLogger("deltaflow")
    for handler in logger.handlers:
        handler.setLevel(logging.WARNING)  # the terminal shows warnings,
    logger.setLevel(logging.INFO)  # while each run's log keeps its INFO lines
    app = create_app(settings)
    err.print(f"deltaflow serve: http://{host}:{port}/api/v1 (state: {_where(settings)})")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)


def _settings(
    database: str | None,
    workers: int,
    configs: Path,
    state_dir: Path,
    admin_key_file: Path | None,
    no_auth: bool,
    lease: float,
    host: str,
) -> ServerSettings:
    from deltaflow.server.settings import ServerSettings, check_bind

    check_bind(host, no_auth)
    admin_key = _admin_key(admin_key_file)
    if not no_auth and not admin_key:
        raise ConfigError(
            "no admin key: the service would accept no request",
            hint="export DELTAFLOW_ADMIN_KEY=..., pass --admin-key-file FILE, or use --no-auth "
            "on 127.0.0.1 for local development",
        )
    if not configs.is_dir():
        raise ConfigError(
            f"the pipeline folder '{configs}' does not exist",
            hint="pass --configs DIR, the folder of the pipelines tenants may run",
        )
    settings = ServerSettings(
        database=database,
        configs=configs.resolve(),
        state_dir=state_dir.resolve(),
        workers=workers,
        admin_key=admin_key,
        no_auth=no_auth,
        lease_s=lease,
    )
    # PostgreSQL holds the run queue too; `deltaflow worker` processes run the runs
    return replace(settings, queue="postgres") if settings.on_postgres() else settings


def _admin_key(path: Path | None) -> str | None:
    """The root admin key from the file, else from $DELTAFLOW_ADMIN_KEY."""
    if path is None:
        return os.environ.get("DELTAFLOW_ADMIN_KEY") or None
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the admin key file '{path}': {exc.strerror}",
            hint="pass a readable file holding the key on one line",
        ) from None
    if len(key) < 16:
        raise ConfigError(
            f"the admin key in '{path}' is {len(key)} characters; at least 16 are needed",
            hint="python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE",
        )
    return key


def _where(settings: ServerSettings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url()).render_as_string(hide_password=True)
