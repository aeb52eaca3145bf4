"""Secrets of every shape stay masked in every channel: `deltaflow run` and `deltaflow
check` (their tables, errors and logs), `runs`, `runs show`, `validate`, and the bytes of
the run store.

A secret is planted through ``${env:...}`` in a quality check's name and in its SQL (whose
failing rows carry it into the check's sample), then searched for as is and in every form
an output could encode it in: JSON escapes (ASCII or not), URL encoding, a Python repr.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

#: the shapes a secret comes in; none holds a single quote, which would end the SQL string
#: it is pasted into (QUOTED_NAME, used only in a check's name, does)
SHAPES = {
    "ascii": "s3cr3t-Ascii-Token-9931",
    "non_ascii": "tök3n-Ünïcode-Geheimnis-7781",
    "quotes": 'dq"uo\\te-Backslash-Token-5520',
    "url_special": "p@ss/w0rd?a=1&b=2%20+#-Token",
}
QUOTED_NAME = "it's-A-Named-Secret-6610"

PIPELINE = """\
pipeline_id: masked
connections:
  files: {type: files, base_path: data}
  warehouse: {type: duckdb, path: warehouse.duckdb}
steps:
  - step_id: orders
    type: sync
    source: {connection: files, path: orders.parquet}
    destination: {connection: warehouse, table: raw.orders, write_mode: replace}
  - step_id: dq
    type: quality
    connection: warehouse
    table: raw.orders
    checks:
      - check: custom_sql
        name: "warned ${env:API_TOKEN} / ${env:NAMED_SECRET}"
        severity: warning
        sql: "SELECT order_id, '${env:API_TOKEN}' AS token FROM raw.orders WHERE order_id < 3"
      - check: custom_sql
        name: "critical ${env:API_TOKEN}"
        sql: "SELECT '${env:API_TOKEN}' AS token, order_id FROM raw.orders WHERE order_id = 1"
"""


def deltaflow(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deltaflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "400", "PYTHONIOENCODING": "utf-8", **env},
    )


def encodings(secret: str) -> dict[str, str]:
    """Every form of ``secret`` an output could carry."""
    return {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "json_unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "url": quote(secret, safe=""),
        "url_plus": quote_plus(secret),
        "repr": repr(secret)[1:-1],
        "ascii_repr": ascii(secret)[1:-1],
    }


def leaks(secret: str, outputs: dict[str, str]) -> list[str]:
    """'channel: form' for every output holding ``secret`` in some form."""
    return [
        f"{channel}: {form}"
        for channel, text in outputs.items()
        for form, encoded in encodings(secret).items()
        if encoded in text
    ]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_planted_secret_is_masked_in_every_channel(tmp_path: Path, shape: str) -> None:
    secret = SHAPES[shape]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"order_id": [1, 2, 3, 4]}), tmp_path / "data" / "orders.parquet")
    (tmp_path / "masked.yml").write_text(PIPELINE, encoding="utf-8")
    env = {"API_TOKEN": secret, "NAMED_SECRET": QUOTED_NAME}

    run = deltaflow(tmp_path, "run", "masked.yml", "--verbose", env=env)
    checked = deltaflow(tmp_path, "check", "masked.yml", "--verbose", env=env)
    listing = deltaflow(tmp_path, "runs", env=env)
    store = tmp_path / ".deltaflow" / "runs.db"
    with sqlite3.connect(store) as con:
        [(run_id,), _] = con.execute("SELECT run_id FROM runs ORDER BY started_at").fetchall()
    show = deltaflow(tmp_path, "runs", "show", run_id, env=env)
    validate = deltaflow(tmp_path, "validate", "masked.yml", env=env)
    stored = store.read_bytes()

    assert run.returncode == 1, run.stderr  # the critical check failed
    assert "QUALITY_CHECK_FAILED" in run.stderr
    assert show.returncode == 0, show.stderr
    assert checked.returncode == 1, checked.stderr
    assert "***" in run.stdout  # the checks table shows the masked name and message
    assert "***" in checked.stdout
    assert "***" in show.stdout
    outputs = {
        "run stdout": run.stdout,
        "run stderr (errors, logs)": run.stderr,
        "check": checked.stdout + checked.stderr,
        "runs": listing.stdout + listing.stderr,
        "runs show": show.stdout + show.stderr,
        "validate": validate.stdout + validate.stderr,
        "run store": stored.decode("utf-8", "replace"),
        "run store (latin-1)": stored.decode("latin-1"),
    }
    assert leaks(secret, outputs) == []
    assert leaks(QUOTED_NAME, outputs) == []
