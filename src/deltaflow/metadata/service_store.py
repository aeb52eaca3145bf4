"""The pipeline service's state: tenants, API keys, runs, their steps and log lines.

One class over a SQLAlchemy engine URL: ``sqlite:///path`` (the embedded default) or
``postgresql+psycopg://...`` (the same tables; the tenant's row is locked while a run is
admitted). On SQLite (one file, WAL) a transaction that writes begins ``BEGIN
IMMEDIATE``, so that admission checks and inserts are serialised, and the service's own
writers queue for it on a lock in the process rather than in SQLite's busy handler,
which sleeps between tries; a read begins deferred and never waits for a writer. Every
text passes secret redaction before it is written. Reads scoped to a tenant take its id
and never return another's.

A queue kept in the same database sets :attr:`ServiceStore.on_queued`: it is called
inside every transaction that queues a run (a trigger, a retry of a lost run, a run
handed back), so the queue's job commits, or rolls back, with the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url

from deltaflow.config.secrets import redact
from deltaflow.metadata.service_records import (
    ACTIVE,
    Admission,
    ApiKeyRecord,
    LogLine,
    Quotas,
    RunFilter,
    ServiceRun,
    ServiceStep,
    TenantRecord,
    now,
)
from deltaflow.metadata.service_tables import api_keys, metadata, run_logs, run_steps, runs, tenants

__all__ = ["Beat", "OnQueued", "ServiceStore"]

OnQueued = Callable[[Connection, str], None]
"""Called with the open transaction and the run id when a run is queued."""


class Beat(NamedTuple):
    """What a heartbeat learns: the worker still holds its run; a cancel was asked for."""

    held: bool
    cancel: bool


#: seconds a SQLite writer waits for the lock before it fails
SQLITE_BUSY_TIMEOUT_S = 30
#: execution option marking a read-only transaction (SQLite begins it deferred)
_READ_ONLY = "deltaflow_read_only"


class ServiceStore:
    """Tenants, keys and runs in SQLite or PostgreSQL; the tables are created on open."""

    def __init__(self, url: str):
        self.url = url
        self.engine = _engine(url)
        self._reader = self.engine.execution_options(**{_READ_ONLY: True})
        sqlite = self.engine.dialect.name == "sqlite"
        self._writing: AbstractContextManager[Any] = threading.Lock() if sqlite else nullcontext()
        metadata.create_all(self.engine)
        self.on_queued: OnQueued | None = None
        """Writes a queue's job for a run in the transaction that queues it (or None)."""

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction that writes (SQLite: it holds the write lock from its start)."""
        with self._writing, self.engine.begin() as con:
            yield con

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A transaction that only reads (SQLite: WAL gives it a snapshot, no lock)."""
        with self._reader.begin() as con:
            yield con

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self._read() as con:
            con.execute(text("SELECT 1"))

    # ------------------------------------------------------------------ tenants

    def add_tenant(self, tenant: TenantRecord) -> tuple[TenantRecord, bool]:
        """Insert the tenant unless it exists; the stored tenant and whether it is new."""
        with self._begin() as con:
            found = _tenant(con, tenant.tenant_id)
            if found is not None:
                return found, False
            row = {k: v for k, v in dataclasses.asdict(tenant).items() if k != "quotas"}
            con.execute(insert(tenants).values(_clean({**row, **_quotas(tenant.quotas)})))
        return tenant, True

    def tenant(self, tenant_id: str) -> TenantRecord | None:
        with self._read() as con:
            return _tenant(con, tenant_id)

    # ------------------------------------------------------------------ API keys

    def add_key(self, key: ApiKeyRecord) -> None:
        with self._begin() as con:
            con.execute(insert(api_keys).values(_clean(dataclasses.asdict(key))))

    def keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        """The tenant's keys, oldest first, revoked ones included."""
        query = select(api_keys).where(api_keys.c.tenant_id == tenant_id)
        with self._read() as con:
            rows = con.execute(query.order_by(api_keys.c.created_at, api_keys.c.key_id))
            return [ApiKeyRecord(**row._asdict()) for row in rows]

    def keys_with_prefix(self, prefix: str) -> list[ApiKeyRecord]:
        with self._read() as con:
            rows = con.execute(select(api_keys).where(api_keys.c.prefix == prefix))
            return [ApiKeyRecord(**row._asdict()) for row in rows]

    def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        """Mark the tenant's key revoked (once); False when the tenant has no such key."""
        where = and_(api_keys.c.tenant_id == tenant_id, api_keys.c.key_id == key_id)
        with self._begin() as con:
            if con.execute(select(api_keys.c.key_id).where(where)).first() is None:
                return False
            con.execute(
                update(api_keys)
                .where(where, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )
        return True

    def touch_key(self, key_id: str) -> None:
        """Record that the key was just used."""
        with self._begin() as con:
            con.execute(
                update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=now())
            )

    # ------------------------------------------------------------------ runs

    def insert_run(
        self, run: ServiceRun, admit: Callable[[Admission], None]
    ) -> tuple[ServiceRun, bool]:
        """Insert a queued run if ``admit`` (which raises to refuse) lets it in, in one
        transaction; a run with the same idempotency key is returned instead: (run, new)."""
        with self._begin() as con:
            _lock_tenant(con, run.tenant_id)
            if run.idempotency_key is not None:
                same = con.execute(
                    select(runs).where(
                        runs.c.tenant_id == run.tenant_id,
                        runs.c.idempotency_key == run.idempotency_key,
                    )
                ).first()
                if same is not None:
                    return ServiceRun(**same._asdict()), False
            admit(_admission(con, run.tenant_id))
            con.execute(insert(runs).values(_clean(dataclasses.asdict(run))))
            self._queued(con, run.run_id)
        return run, True

    def run(self, tenant_id: str, run_id: str) -> ServiceRun | None:
        """The tenant's run with this id; None for no run, or another tenant's."""
        where = and_(runs.c.tenant_id == tenant_id, runs.c.run_id == run_id)
        with self._read() as con:
            row = con.execute(select(runs).where(where)).first()
        return ServiceRun(**row._asdict()) if row is not None else None

    def run_by_id(self, run_id: str) -> ServiceRun | None:
        """Any tenant's run: for the workers, never for a request."""
        with self._read() as con:
            row = con.execute(select(runs).where(runs.c.run_id == run_id)).first()
        return ServiceRun(**row._asdict()) if row is not None else None

    def list_runs(self, tenant_id: str, where: RunFilter) -> list[ServiceRun]:
        """The tenant's runs that pass the filter, newest first."""
        query = select(runs).where(runs.c.tenant_id == tenant_id)
        if where.pipeline:
            query = query.where(
                or_(runs.c.pipeline_path == where.pipeline, runs.c.pipeline_id == where.pipeline)
            )
        if where.status:
            query = query.where(runs.c.status == where.status)
        if where.since:
            query = query.where(runs.c.requested_at >= where.since)
        if where.until:
            query = query.where(runs.c.requested_at < where.until)
        if where.after:
            at, run_id = where.after
            query = query.where(
                or_(
                    runs.c.requested_at < at,
                    and_(runs.c.requested_at == at, runs.c.run_id < run_id),
                )
            )
        query = query.order_by(runs.c.requested_at.desc(), runs.c.run_id.desc())
        query = query.limit(where.limit).offset(where.offset)
        with self._read() as con:
            return [ServiceRun(**row._asdict()) for row in con.execute(query)]

    def queued_run_ids(self) -> list[str]:
        """Every queued run, oldest first: what a starting worker pool takes up."""
        query = select(runs.c.run_id).where(runs.c.status == "queued")
        with self._read() as con:
            return list(con.scalars(query.order_by(runs.c.requested_at, runs.c.run_id)))

    def claim_run(self, run_id: str, worker_id: str) -> ServiceRun | None:
        """Mark a queued run running for ``worker_id``; None when it is no longer queued
        (cancelled, or taken by another worker)."""
        stamp = now()
        with self._begin() as con:
            taken = con.execute(
                update(runs)
                .where(runs.c.run_id == run_id, runs.c.status == "queued")
                .values(status="running", worker_id=worker_id, started_at=stamp, heartbeat_at=stamp)
            ).rowcount
            row = con.execute(select(runs).where(runs.c.run_id == run_id)).first()
        return ServiceRun(**row._asdict()) if taken and row is not None else None

    def heartbeat(self, run_id: str, worker_id: str) -> Beat:
        """Renew the worker's lease on its run: whether the worker still holds it (it was
        not recorded lost meanwhile) and whether a cancel was requested."""
        where = and_(
            runs.c.run_id == run_id, runs.c.worker_id == worker_id, runs.c.status == "running"
        )
        with self._begin() as con:
            held = con.execute(update(runs).where(where).values(heartbeat_at=now())).rowcount
            wanted = con.execute(select(runs.c.cancel_requested).where(where)).scalar()
        return Beat(held=bool(held), cancel=bool(wanted))

    def request_cancel(self, tenant_id: str, run_id: str) -> ServiceRun | None:
        """A queued run is cancelled at once; a running one is asked to stop. None when the
        tenant has no such run."""
        where = and_(runs.c.tenant_id == tenant_id, runs.c.run_id == run_id)
        with self._begin() as con:
            con.execute(
                update(runs)
                .where(where, runs.c.status == "queued")
                .values(status="cancelled", cancel_requested=True, ended_at=now())
            )
            con.execute(
                update(runs).where(where, runs.c.status == "running").values(cancel_requested=True)
            )
            row = con.execute(select(runs).where(where)).first()
        return ServiceRun(**row._asdict()) if row is not None else None

    def holds(self, run_id: str, worker_id: str) -> bool:
        """Whether the run is running on this worker (not recorded lost meanwhile)."""
        where = and_(
            runs.c.run_id == run_id, runs.c.worker_id == worker_id, runs.c.status == "running"
        )
        with self._begin() as con:
            return con.execute(select(runs.c.run_id).where(where)).first() is not None

    def finish_run(self, run: ServiceRun, steps: Sequence[ServiceStep]) -> bool:
        """Write the run's outcome and its steps (replacing what was there) if its worker
        still holds it; False when the run was recorded lost meanwhile (nothing written)."""
        with self._begin() as con:
            held = con.execute(
                update(runs)
                .where(
                    runs.c.run_id == run.run_id,
                    runs.c.worker_id == run.worker_id,
                    runs.c.status == "running",
                )
                .values(_clean({**dataclasses.asdict(run), "heartbeat_at": now()}))
            ).rowcount
            if held:
                con.execute(run_steps.delete().where(run_steps.c.run_id == run.run_id))
                if steps:
                    con.execute(insert(run_steps), [_clean(dataclasses.asdict(s)) for s in steps])
        return bool(held)

    def release_run(self, run_id: str, worker_id: str) -> None:
        """Hand a running run back to the queue (a worker stopping gracefully)."""
        where = and_(runs.c.run_id == run_id, runs.c.worker_id == worker_id)
        with self._begin() as con:
            released = con.execute(
                update(runs)
                .where(where, runs.c.status == "running")
                .values(status="queued", worker_id=None, started_at=None, heartbeat_at=None)
            ).rowcount
            if released:
                self._queued(con, run_id)

    def expired_runs(self, lease: dt.timedelta) -> list[ServiceRun]:
        """Running runs whose worker has not heartbeated within ``lease``."""
        cutoff = (dt.datetime.now(dt.UTC) - lease).isoformat(timespec="milliseconds")
        query = select(runs).where(runs.c.status == "running", runs.c.heartbeat_at < cutoff)
        with self._read() as con:
            return [ServiceRun(**row._asdict()) for row in con.execute(query)]

    def fail_lost_run(self, lost: ServiceRun, retry: ServiceRun | None) -> bool:
        """Record a run whose worker was lost as failed, and queue ``retry`` in the same
        transaction; False when another recovery (or the worker) got there first."""
        with self._begin() as con:
            done = con.execute(
                update(runs)
                .where(runs.c.run_id == lost.run_id, runs.c.status == "running")
                .values(_clean(dataclasses.asdict(lost)))
            ).rowcount
            if done and retry is not None:
                con.execute(insert(runs).values(_clean(dataclasses.asdict(retry))))
                self._queued(con, retry.run_id)
        return bool(done)

    def _queued(self, con: Connection, run_id: str) -> None:
        if self.on_queued is not None:
            self.on_queued(con, run_id)

    # ------------------------------------------------------------------ steps and logs

    def steps(self, tenant_id: str, run_id: str) -> list[ServiceStep]:
        """The steps of the tenant's run, in order (none for another tenant's run)."""
        query = (
            select(run_steps)
            .join(runs, runs.c.run_id == run_steps.c.run_id)
            .where(runs.c.tenant_id == tenant_id, run_steps.c.run_id == run_id)
            .order_by(run_steps.c.position)
        )
        with self._read() as con:
            return [ServiceStep(**row._asdict()) for row in con.execute(query)]

    def add_logs(self, run_id: str, lines: Sequence[tuple[str, str, str]]) -> None:
        """Append (at, level, message) lines to the run's log."""
        if not lines:
            return
        with self._begin() as con:
            last = con.execute(
                select(func.max(run_logs.c.seq)).where(run_logs.c.run_id == run_id)
            ).scalar()
            start = (last or 0) + 1
            rows = [
                {"run_id": run_id, "seq": start + i, "at": at, "level": level, "message": msg}
                for i, (at, level, msg) in enumerate(lines)
            ]
            con.execute(insert(run_logs), [_clean(r) for r in rows])

    def logs(self, tenant_id: str, run_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        """The tenant's run's log lines after sequence number ``after``."""
        query = (
            select(run_logs.c.seq, run_logs.c.at, run_logs.c.level, run_logs.c.message)
            .join(runs, runs.c.run_id == run_logs.c.run_id)
            .where(runs.c.tenant_id == tenant_id, run_logs.c.run_id == run_id)
            .where(run_logs.c.seq > after)
            .order_by(run_logs.c.seq)
            .limit(limit)
        )
        with self._read() as con:
            return [LogLine(**row._asdict()) for row in con.execute(query)]


# ---------------------------------------------------------------------- helpers


def _engine(url: str) -> Engine:
    """An engine for the URL; SQLite gets WAL, a busy timeout and immediate transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_con: Any, _record: Any) -> None:
        dbapi_con.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_con.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # every commit is synced: a trigger that was answered survives a power loss too
        # (synchronous=NORMAL measured faster under load, but could lose acknowledged runs)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(con: Connection) -> None:
        read_only = con.get_execution_options().get(_READ_ONLY, False)
        con.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _tenant(con: Connection, tenant_id: str) -> TenantRecord | None:
    row = con.execute(select(tenants).where(tenants.c.tenant_id == tenant_id)).first()
    if row is None:
        return None
    values = row._asdict()
    quotas = Quotas(**{f.name: values.pop(f.name) for f in dataclasses.fields(Quotas)})
    return TenantRecord(**values, quotas=quotas)


def _quotas(quotas: Quotas) -> dict[str, int]:
    return dataclasses.asdict(quotas)


def _lock_tenant(con: Connection, tenant_id: str) -> None:
    """Serialise admissions of one tenant's runs (SQLite: the transaction is immediate)."""
    query = select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant_id)
    if con.dialect.name != "sqlite":
        query = query.with_for_update()
    con.execute(query)


def _admission(con: Connection, tenant_id: str) -> Admission:
    active = con.execute(
        select(runs).where(runs.c.tenant_id == tenant_id, runs.c.status.in_(ACTIVE))
    )
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = con.execute(
        select(func.count())
        .select_from(runs)
        .where(
            runs.c.tenant_id == tenant_id,
            runs.c.requested_at >= midnight.isoformat(timespec="milliseconds"),
            runs.c.trigger_type != "retry",
        )
    ).scalar()
    return Admission([ServiceRun(**row._asdict()) for row in active], int(today or 0))


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every text, inside JSON values too, passed through secret redaction."""
    return {k: _redacted(v) for k, v in row.items()}


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value
