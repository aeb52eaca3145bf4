"""Fixtures shared by every test tier."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.bigquery import BigQueryEmulator, running_bigquery
from tests.support.mongodb import MongoServer, running_mongodb
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
def bq_dataset(bigquery_emulator: BigQueryEmulator, loopback_only: None) -> Iterator[str]:
    """A fresh dataset for one test (the emulator remembers some state across tables).

    The test runs with ``loopback_only``: a connection anywhere but this machine fails
    it, which proves that no code path calls a Google endpoint when an emulator is set."""
    client = bigquery_emulator.client()
    name = f"t_{uuid.uuid4().hex[:12]}"
    client.create_dataset(name, timeout=30)
    yield name
    client.delete_dataset(name, delete_contents=True, not_found_ok=True, timeout=30)


@pytest.fixture(scope="session")
def mongodb_server() -> Iterator[MongoServer]:
    """A MongoDB wire-protocol server for the whole session (see tests/support/mongodb.py)."""
    with running_mongodb() as server:
        yield server


@pytest.fixture
def mongo_db(mongodb_server: MongoServer) -> Iterator[str]:
    """A fresh database for one test."""
    import pymongo

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(mongodb_server.uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


class OffMachineConnection(AssertionError):
    pass


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python sockets in this process may reach 127.0.0.1 (and ::1) only."""
    import socket

    connect = socket.socket.connect
    resolve = socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OffMachineConnection(f"a test tried to connect to {address!r}")
        connect(self, address)  # type: ignore[arg-type]

    def guarded_resolve(host: object, *args: object, **kwargs: object) -> object:
        if host not in (None, "127.0.0.1", "::1", "localhost"):
            raise OffMachineConnection(f"a test tried to resolve {host!r}")
        return resolve(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_resolve)
