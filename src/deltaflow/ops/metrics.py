"""Business metrics defined as SQL in JSON: validate a definitions file; run metrics for
a date against the connection profile of an environment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from deltaflow.config.connections import ConnectionBase
from deltaflow.connectors.protocol import RunResources
from deltaflow.errors import ConfigError, SecretError
from deltaflow.metrics import definitions
from deltaflow.metrics.definitions import Problem
from deltaflow.metrics.engine import Outcome, Run, run_metrics
from deltaflow.ops._pipeline import new_run_id

#: the environments a profiles file names
ENVIRONMENTS = ("DEV", "BLD", "PRD")


@dataclass(frozen=True)
class DefinitionsReport:
    """How many metrics a definitions file holds, and every problem in it."""

    metrics: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_definitions(config: str, dialect: str = "bigquery") -> DefinitionsReport:
    """Check a definitions file (a path or gs://bucket/key), reporting all problems."""
    metrics, problems = definitions.parse(definitions.read_text(config), dialect)
    return DefinitionsReport(len(metrics), problems)


@dataclass(frozen=True)
class MetricsRunRequest:
    """Which metrics to run for which date, where, and how."""

    config: str
    """Metric definitions (JSON), a path or gs://bucket/key."""
    run_date: dt.date
    env: str = "DEV"
    """One of ``ENVIRONMENTS``; selects the connection profile."""
    dependencies: Sequence[str] = ()
    """Dependency groups to run (all when empty)."""
    partition_info_table: str | None = None
    recon_table: str = "metrics_recon"
    profiles: Path = Path("profiles.yml")
    dialect: str = "bigquery"
    timeout: float = 180.0
    workers: int = 4


def load_profile(path: Path, env: str) -> ConnectionBase:
    """The connection of ``env`` in a profiles file ({DEV: {type: duckdb, ...}, ...})."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    from deltaflow.config.connections import Connection
    from deltaflow.config.secrets import resolve_tree

    if not path.exists():
        raise ConfigError(
            f"no connection profiles file {path}",
            hint="write one: 'DEV: {type: duckdb, path: metrics.duckdb}' per environment, "
            "or pass --profiles FILE",
        )
    profiles = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if env not in profiles:
        raise ConfigError(
            f"no profile '{env}' in {path}", hint=f"profiles: {', '.join(profiles) or 'none'}"
        )
    failures: list[SecretError] = []
    raw = resolve_tree(profiles[env], path.parent, lambda where, exc: failures.append(exc))
    if failures:
        raise failures[0]
    try:
        connection: ConnectionBase = TypeAdapter(Connection).validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(f"profile '{env}' in {path}: {exc}", hint="fix the profile") from None
    return connection


def run(request: MetricsRunRequest) -> list[Outcome]:
    """Run the selected metrics: results to their target tables (a rerun replaces them),
    one reconciliation record per metric. A failed metric is in its outcome."""
    metrics = definitions.select(
        definitions.load(request.config, request.dialect), list(request.dependencies)
    )
    conn = load_profile(request.profiles, request.env)
    with closing(RunResources(Path.cwd(), new_run_id())) as resources:
        work = Run(
            conn,
            resources,
            request.run_date,
            request.partition_info_table,
            request.recon_table,
            request.env,
            request.dialect,
            request.timeout,
            request.workers,
        )
        return run_metrics(work, metrics)
