"""What the pipeline service's use cases share: the state store and where things are."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from deltaflow.metadata.service_records import Quotas
from deltaflow.metadata.service_store import ServiceStore


@dataclass
class Service:
    """The service's state store, its pipeline folder and its run-time settings."""

    store: ServiceStore
    configs: Path
    """The folder of the pipelines tenants may run: ``<configs>/<pipeline_path>.yml``."""
    state_dir: Path
    """Where the service keeps its files (the embedded database, the CLI run store)."""
    lease: dt.timedelta = dt.timedelta(seconds=60)
    """A running run whose worker has not heartbeated for this long is lost."""
    heartbeat_s: float = 5.0
    """Seconds between a worker's heartbeats (and its checks for a cancel request)."""
    max_attempts: int = 2
    """Attempts a run gets when its worker is lost (1: never retried)."""
    quotas: Quotas = field(default_factory=Quotas)
    """Quotas of a tenant onboarded without its own."""

    @property
    def run_store(self) -> Path:
        """The CLI run store the pipelines' runs are also recorded in."""
        return self.state_dir / "runs.db"
