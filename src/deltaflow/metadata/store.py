"""Run metadata in an embedded SQLite file (default ``.deltaflow/runs.db``).

Every text field, and every string inside a step's details, passes through secret
redaction before it is encoded and written, so no resolved secret value is ever stored
(not even JSON-escaped). A saved record keeps the redacted values, so what a caller shows
of it afterwards is what was stored.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from deltaflow.config.secrets import redact, redact_tree

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
    status TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, duration_s REAL,
    rows_read INTEGER, rows_loaded INTEGER, error_code TEXT, error_message TEXT,
    pipeline_file TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS step_runs (
    run_id TEXT NOT NULL REFERENCES runs (run_id), step_id TEXT NOT NULL,
    step_type TEXT NOT NULL, stream TEXT, destination TEXT, write_mode TEXT,
    status TEXT NOT NULL, started_at TEXT, ended_at TEXT, duration_s REAL,
    rows_read INTEGER, rows_loaded INTEGER, table_rows INTEGER, details TEXT,
    error_code TEXT, error_message TEXT, position INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
"""


@dataclass
class RunRecord:
    run_id: str
    pipeline_id: str
    tenant_id: str
    status: str
    started_at: str
    ended_at: str | None = None
    duration_s: float | None = None
    rows_read: int | None = None
    rows_loaded: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    pipeline_file: str | None = None


@dataclass
class StepRecord:
    run_id: str
    step_id: str
    step_type: str
    status: str
    position: int
    stream: str | None = None
    destination: str | None = None
    write_mode: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    rows_read: int | None = None
    rows_loaded: int | None = None
    table_rows: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None


def default_store_path() -> Path:
    """``$DELTAFLOW_METADATA``, else ``.deltaflow/runs.db`` in the current directory."""
    return Path(os.environ.get("DELTAFLOW_METADATA", ".deltaflow/runs.db"))


class RunStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction; the tables are created on first use."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        try:
            if not self._ready:
                con.executescript(_SCHEMA)
                self._ready = True
            with con:
                yield con
        finally:
            con.close()

    def save_run(self, run: RunRecord) -> None:
        _redact_fields(run)
        self._upsert("runs", asdict(run))

    def save_step(self, step: StepRecord) -> None:
        _redact_fields(step)
        step.details = redact_tree(_as_details(step.details))
        row = asdict(step)
        row["details"] = redact(json.dumps(step.details, default=_text, ensure_ascii=False))
        self._upsert("step_runs", row)

    def _upsert(self, table: str, row: dict[str, Any]) -> None:
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._connect() as con:
            con.execute(
                f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})", list(row.values())
            )

    def runs(self, limit: int = 20, pipeline_id: str | None = None) -> list[RunRecord]:
        where, params = ("WHERE pipeline_id = ?", [pipeline_id]) if pipeline_id else ("", [])
        with self._connect() as con:
            rows = con.execute(
                f"SELECT {_columns(RunRecord)} FROM runs {where} ORDER BY started_at DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [RunRecord(*row) for row in rows]

    def run(self, run_id: str) -> RunRecord | None:
        with self._connect() as con:
            rows = con.execute(
                f"SELECT {_columns(RunRecord)} FROM runs WHERE run_id LIKE ?", [f"{run_id}%"]
            ).fetchall()
        return RunRecord(*rows[0]) if len(rows) == 1 else None

    def steps(self, run_id: str) -> list[StepRecord]:
        with self._connect() as con:
            rows = con.execute(
                f"SELECT {_columns(StepRecord)} FROM step_runs WHERE run_id = ? ORDER BY position",
                [run_id],
            ).fetchall()
        records = [StepRecord(*row) for row in rows]
        for record in records:
            stored: Any = record.details
            record.details = _as_details(json.loads(stored) if stored else {})
        return records


def _columns(record: type) -> str:
    return ", ".join(f.name for f in fields(record))


def _redact_fields(record: RunRecord | StepRecord) -> None:
    """Mask secrets in the record's text fields, in place."""
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, str):
            setattr(record, f.name, redact(value))


def _as_details(value: Any) -> dict[str, Any]:
    """Step details as a mapping: anything else (a driver's own ``details`` list, say)
    is kept under ``details`` rather than breaking every reader of the run."""
    return value if isinstance(value, dict) else {"details": value}


def _text(value: Any) -> str:
    """A value JSON cannot encode, as redacted text (it may print a secret)."""
    return redact(str(value))
