"""The destinations the conformance suite runs over, and a reader for each.

A test asks for ``target`` parametrized with ``destinations(...)``: the destinations whose
connection model claims the abilities the test needs (its ``write_modes``, ``keeps_state``,
a ``table`` option). Each ``Target`` opens destinations through the registry only, and
reads results back with the system's own client: DuckDB via duckdb, PostgreSQL via
psycopg, BigQuery via the google client against the emulator, files via pyarrow.

The servers are the session fixtures of ``tests/conftest.py``: a test on PostgreSQL gets a
fresh database (``pg_dsn``), a test on BigQuery a fresh dataset (``bq_dataset``).

A new destination is done when it passes the suite: add its connection model to
``MODELS``, a setup function (connection and reader) to ``_SETUP``, and run
``pytest tests/conformance``. A gap a destination has today is an ``xfail`` (strict) on
its parameter only, with the reason, so the suite says what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from deltaflow import quarantine
from deltaflow.config.connections import (
    BigQueryConnection,
    ConnectionBase,
    DuckDBConnection,
    FilesConnection,
    PostgresConnection,
    WriteMode,
)
from deltaflow.config.models import DestinationSpec
from deltaflow.connectors.protocol import Destination, RunResources, StateRecord
from deltaflow.connectors.registry import open_destination
from deltaflow.schema.types import TableSchema

#: every destination the suite knows, by connection type
MODELS: dict[str, type[ConnectionBase]] = {
    "duckdb": DuckDBConnection,
    "postgres": PostgresConnection,
    "bigquery": BigQueryConnection,
    "files": FilesConnection,
}


def can(kind: str, need: str) -> bool:
    """Whether the connection model of ``kind`` claims ``need``: a write mode, ``state``
    (incremental state kept with the rows) or ``tables`` (it loads a named table)."""
    model = MODELS[kind]
    if need == "state":
        return model.keeps_state
    if need == "tables":
        return "table" in model.destination_options
    return need in model.write_modes


def destinations(*needs: str, xfail: Mapping[str, str] | None = None) -> list[Any]:
    """``target`` parameters: the destinations that can do all of ``needs``; those named in
    ``xfail`` are expected to fail (strictly), with the reason given."""
    return [
        _param(kind, kind, (xfail or {}).get(kind))
        for kind in MODELS
        if all(can(kind, need) for need in needs)
    ]


def with_modes(*modes: WriteMode) -> list[Any]:
    """``(target, mode)`` parameters: each destination with each of ``modes`` it supports."""
    return [
        pytest.param(kind, mode, id=f"{kind}-{mode}")
        for kind in MODELS
        for mode in modes
        if can(kind, mode)
    ]


def _param(kind: str, ident: str, reason: str | None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(kind, id=ident, marks=marks)


# --------------------------------------------------------------------------- data


class Boom(RuntimeError):
    """What a failing source raises mid-stream."""


def arrow(rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def reader(table: pa.Table, chunk: int = 2) -> pa.RecordBatchReader:
    """``table`` as a stream of batches of ``chunk`` rows."""
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=chunk))


def failing_reader(table: pa.Table, good_batches: int = 2) -> pa.RecordBatchReader:
    """One-row batches of ``table``: ``good_batches`` of them, then Boom."""

    def batches() -> Iterator[pa.RecordBatch]:
        yield from table.to_batches(max_chunksize=1)[:good_batches]
        raise Boom("source died midway")

    return pa.RecordBatchReader.from_batches(table.schema, batches())


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One destination system under test: opens destinations, reads tables back."""

    kind: str
    connection: ConnectionBase
    resources: RunResources
    _reader: Any

    def open(self, table: str, **spec: Any) -> Destination:
        """A destination for ``table`` (a directory, for files) through the registry."""
        where = {"table": table} if can(self.kind, "tables") else {"path": table}
        return open_destination(
            self.connection, DestinationSpec(connection="target", **where, **spec), self.resources
        )

    def prepared(
        self, table: str, data: pa.Table, primary_key: tuple[str, ...] = (), **spec: Any
    ) -> Destination:
        """A destination for ``table``, prepared for ``data``'s schema."""
        keys = {"primary_key": list(primary_key)} if primary_key else {}
        destination = self.open(table, **keys, **spec)
        destination.prepare(TableSchema.from_arrow(data.schema, primary_key=primary_key))
        return destination

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``table``, as dicts, in no particular order."""
        found: list[dict[str, Any]] = self._reader.rows(table)
        return found

    def columns(self, table: str) -> list[str]:
        """The column names of ``table`` in their order; [] when it does not exist."""
        found: list[str] = self._reader.columns(table)
        return found

    def sorted_rows(self, table: str, key: str = "id") -> list[dict[str, Any]]:
        return sorted(self.rows(table), key=lambda row: row[key])

    def quarantined(self, table: str) -> list[dict[str, Any]]:
        return self.rows(f"{table}{quarantine.SUFFIX}")


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """The destination system named by the test's parameter, with a fresh place to load."""
    kind: str = request.param
    resources = RunResources(tmp_path, "run-1")
    connection, reader_ = _SETUP[kind](request, tmp_path, resources)
    try:
        yield Target(kind, connection, resources, reader_)
    finally:
        resources.close()


def _duckdb(
    request: pytest.FixtureRequest, tmp_path: Path, resources: RunResources
) -> tuple[ConnectionBase, Any]:
    return DuckDBConnection(type="duckdb", path="warehouse.duckdb"), DuckDBReader(resources)


def _postgres(
    request: pytest.FixtureRequest, tmp_path: Path, resources: RunResources
) -> tuple[ConnectionBase, Any]:
    dsn: str = request.getfixturevalue("pg_dsn")
    return PostgresConnection(type="postgres", dsn=dsn), PostgresReader(dsn)


def _bigquery(
    request: pytest.FixtureRequest, tmp_path: Path, resources: RunResources
) -> tuple[ConnectionBase, Any]:
    emulator = request.getfixturevalue("bigquery_emulator")
    dataset: str = request.getfixturevalue("bq_dataset")
    connection = BigQueryConnection(
        type="bigquery",
        project=emulator.project,
        dataset=dataset,
        credentials="anonymous",
        api_endpoint=emulator.endpoint,
        storage_endpoint=f"127.0.0.1:{emulator.grpc_port}",
        timeout=60,
    )
    return connection, BigQueryReader(emulator.client(), emulator.project, dataset)


def _files(
    request: pytest.FixtureRequest, tmp_path: Path, resources: RunResources
) -> tuple[ConnectionBase, Any]:
    return FilesConnection(type="files", base_path="out"), FilesReader(tmp_path / "out")


_SETUP = {"duckdb": _duckdb, "postgres": _postgres, "bigquery": _bigquery, "files": _files}


# --------------------------------------------------------------------------- readers


def _double_quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBReader:
    """Reads the run's DuckDB database through the connection the run shares (a second
    connection to the same file would have to repeat its configuration exactly)."""

    def __init__(self, resources: RunResources):
        self.resources = resources

    def _cursor(self) -> Any:
        import duckdb

        shared = self.resources.handles.values()
        handles = [h for h in shared if isinstance(h, duckdb.DuckDBPyConnection)]
        assert handles, "no DuckDB destination was opened in this run"
        return handles[0].cursor()

    def rows(self, table: str) -> list[dict[str, Any]]:
        result = self._cursor().execute(f"SELECT * FROM main.{_double_quoted(table)}")
        rows: list[dict[str, Any]] = result.to_arrow_table().to_pylist()
        return rows

    def columns(self, table: str) -> list[str]:
        found = self._cursor().execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = $1 ORDER BY ordinal_position",
            [table],
        )
        return [name for (name,) in found.fetchall()]


class PostgresReader:
    def __init__(self, dsn: str):
        self.dsn = dsn

    def _fetch(self, sql: str, params: Any = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as con:
            cursor = con.execute(sql, params)
            names = [c.name for c in cursor.description or []]
            return names, cursor.fetchall()

    def rows(self, table: str) -> list[dict[str, Any]]:
        names, rows = self._fetch(f"SELECT * FROM public.{_double_quoted(table)}")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def columns(self, table: str) -> list[str]:
        _, rows = self._fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (table,),
        )
        return [name for (name,) in rows]


class BigQueryReader:
    def __init__(self, client: Any, project: str, dataset: str):
        self.client = client
        self.project = project
        self.dataset = dataset

    def _id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def rows(self, table: str) -> list[dict[str, Any]]:
        job = self.client.query(f"SELECT * FROM `{self._id(table)}`", timeout=30)
        return [dict(row.items()) for row in job.result(timeout=60)]

    def columns(self, table: str) -> list[str]:
        from google.api_core.exceptions import NotFound

        try:
            return [f.name for f in self.client.get_table(self._id(table), timeout=30).schema]
        except NotFound:
            return []


class FilesReader:
    """Reads a files destination's directory: every Parquet part in it."""

    def __init__(self, root: Path):
        self.root = root

    def _table(self, name: str) -> pa.Table | None:
        import pyarrow.parquet as pq

        parts = sorted((self.root / name).glob("*.parquet"))
        if not parts:
            return None
        return pa.concat_tables(pq.read_table(p) for p in parts)

    def rows(self, table: str) -> list[dict[str, Any]]:
        found = self._table(table)
        return [] if found is None else found.to_pylist()

    def columns(self, table: str) -> list[str]:
        found = self._table(table)
        return [] if found is None else found.column_names


def state_record(key: str, watermark: str | None, *boundary: str) -> StateRecord:
    """A state record with every field set, so a read-back compares exactly."""
    return StateRecord(
        key=key,
        cursor="updated_at",
        watermark=watermark,
        boundary=tuple(boundary),
        run_id="run-1",
        updated_at="2024-03-01T12:00:00+00:00",
    )
