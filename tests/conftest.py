"""Fixtures shared by every test tier."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.bigquery import BigQueryEmulator, running_bigquery
from tests.support.postgres import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (see tests/support/postgres.py)."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.dsn(name)
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as con:
        con.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    """The BigQuery emulator for the whole session (see tests/support/bigquery.py)."""
    with running_bigquery() as emulator:
        yield emulator


@pytest.fixture
def bq_dataset(bigquery_emulator: BigQueryEmulator) -> Iterator[str]:
    """A fresh dataset for one test (the emulator remembers some state across tables)."""
    client = bigquery_emulator.client()
    name = f"t_{uuid.uuid4().hex[:12]}"
    client.create_dataset(name, timeout=30)
    yield name
    client.delete_dataset(name, delete_contents=True, not_found_ok=True, timeout=30)
