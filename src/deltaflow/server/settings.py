"""How the service is started: its database, folders, workers, keys and limits."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from deltaflow.errors import ConfigError
from deltaflow.metadata.service_records import Quotas

if TYPE_CHECKING:
    from deltaflow.ops.service import Service

QueueKind = Literal["embedded", "postgres"]

DEFAULT_STATE_DIR = Path(".deltaflow")


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``create_app`` needs; the admin key never shows in a repr."""

    database: str | None = None
    """A SQLAlchemy URL; None: the embedded SQLite file ``<state_dir>/service.db``."""
    configs: Path = Path("configs")
    state_dir: Path = DEFAULT_STATE_DIR
    workers: int = 2
    admin_key: str | None = field(default=None, repr=False)
    no_auth: bool = False
    """Local development: every request acts as the root admin (loopback only)."""
    default_tenant: str = "default"
    """The tenant a request acts as when neither its key nor its path names one."""
    lease_s: float = 60.0
    heartbeat_s: float = 5.0
    max_attempts: int = 2
    drain_s: float = 30.0
    quotas: Quotas = field(default_factory=Quotas)
    start_workers: bool = True
    queue: QueueKind = "embedded"
    """``embedded``: worker threads in the service's process; ``postgres``: a procrastinate
    queue in the (PostgreSQL) state database, drained by ``deltaflow worker`` processes."""

    def database_url(self) -> str:
        """The database URL; a ``postgresql://`` one is given the psycopg driver."""
        url = self.database or f"sqlite:///{(self.state_dir / 'service.db').resolve()}"
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain) :]
        return url

    def on_postgres(self) -> bool:
        """Whether the state database is PostgreSQL (which can hold the run queue)."""
        return self.database_url().startswith("postgresql+psycopg://")


def open_service(settings: ServerSettings) -> Service:
    """The state store at the settings' database and the service's run-time settings."""
    from deltaflow.metadata.service_store import ServiceStore
    from deltaflow.ops.service import Service

    return Service(
        store=ServiceStore(settings.database_url()),
        configs=settings.configs,
        state_dir=settings.state_dir,
        lease=dt.timedelta(seconds=settings.lease_s),
        heartbeat_s=settings.heartbeat_s,
        max_attempts=settings.max_attempts,
        quotas=settings.quotas,
    )


def check_bind(host: str, no_auth: bool) -> None:
    """``--no-auth`` serves loopback only: any other address is refused with the fix."""
    if not no_auth:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"--no-auth refuses to listen on '{host}': without keys anyone who reaches it "
            "could run pipelines",
            hint="use --host 127.0.0.1 (or ::1), or drop --no-auth and set an admin key",
        )
