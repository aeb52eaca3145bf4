"""PostgreSQL connection strings in both of libpq's forms, against a real server."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import psycopg

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline


def key_value(uri: str) -> str:
    """``postgresql://user@host:port/db`` as ``host=... port=... user=... dbname=...``."""
    parts = urlsplit(uri)
    return (
        f"host={parts.hostname} port={parts.port} user={parts.username} "
        f"dbname={parts.path.lstrip('/')}"
    )


def test_a_key_value_dsn_syncs_into_duckdb(tmp_path: Path, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as con:
        con.execute("CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 1000) g")
    file = tmp_path / "kv.yml"
    file.write_text(
        textwrap.dedent(f"""\
        pipeline_id: kv
        connections:
          pg: {{type: postgres, dsn: "{key_value(pg_dsn)}", application_name: kv-test}}
          wh: {{type: duckdb, path: wh.duckdb}}
        steps:
          - step_id: items
            type: sync
            source: {{connection: pg, table: public.items, splits: 2}}
            destination: {{connection: wh, table: raw.items}}
        """)
    )
    result = run_pipeline(
        load_pipeline(file), context=RunContext(), store=RunStore(tmp_path / "runs.db")
    )

    assert result.error is None, result.error
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), sum(id) FROM raw.items").fetchone() == (1000, 500500)
