"""PostgreSQL source and destination against a real server (see tests/conftest.py)."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline
from deltaflow.config.connections import PostgresConnection
from deltaflow.config.sources import SplitSqlSource
from deltaflow.connectors.postgres import PostgresSource
from deltaflow.connectors.protocol import RunResources
from deltaflow.errors import SchemaError
from deltaflow.orchestration.runner import RunResult

ALL_TYPES = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE public.alltypes (
  id bigint PRIMARY KEY, s smallint, i integer, n12 numeric(12,2), n numeric,
  r real, d double precision, b boolean, t text, v varchar(20), c char(3), u uuid,
  by bytea, dt date, tm time, ts timestamp, tstz timestamptz, iv interval,
  j json, jb jsonb, ai integer[], at text[], m mood, p posint, pt point
);
INSERT INTO alltypes VALUES
 (1, 1, 2, 12.30, 123456789012345678901234567890.123456789, 1.5, 'NaN', true,
  'héllo ✓ 日本', 'v', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff00',
  '2024-02-29', '23:59:59.999999', '2024-01-01 12:00:00.123456',
  '2024-01-01 12:00:00.123456+02', '1 year 2 mons 3 days 04:05:06.789',
  '{"a": 1}', '{"b": [1, 2], "c": {"d": null}}', '{1,NULL,3}', '{}', 'happy', 5, '(1,2)'),
 (2, -32768, -2147483648, -0.01, 0.000000001, '-Infinity', 'Infinity', false, '', '', '',
  NULL, '', '0001-01-01', '00:00:00', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00',
  '-1 days', 'null', '[]', NULL, '{"a,b","c\\"d",NULL}', 'sad', 1, NULL),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


def sql(dsn: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as con:
        cursor = con.execute(statement)
        return cursor.fetchall() if cursor.description else []


def run(tmp_path: Path, text: str, **env: str) -> RunResult:
    path = tmp_path / "pipeline.yml"
    path.write_text(textwrap.dedent(text))
    loaded = load_pipeline(path)
    return run_pipeline(loaded, context=RunContext(), store=RunStore(tmp_path / "runs.db"))


def pipeline(dsn: str, steps: str, duckdb: str = "wh.duckdb") -> str:
    return f"""\
pipeline_id: pg
connections:
  pg: {{type: postgres, dsn: "{dsn}"}}
  wh: {{type: duckdb, path: {duckdb}}}
steps:
{textwrap.indent(textwrap.dedent(steps), "  ")}"""


def files_to_pg(dsn: str, steps: str) -> str:
    """A pipeline from the test's files into PostgreSQL."""
    return textwrap.dedent(f"""\
        pipeline_id: m
        connections:
          files: {{type: files}}
          pg: {{type: postgres, dsn: "{dsn}"}}
        steps:
        """) + textwrap.indent(textwrap.dedent(steps), "  ")


def as_text(dsn: str, table: str, columns: list[str]) -> list[tuple[object, ...]]:
    select = ", ".join(f"{c}::jsonb::text" if c in ("j", "jb") else f"{c}::text" for c in columns)
    return sql(dsn, f"SELECT {select} FROM {table} ORDER BY id")


def pg_source(
    pg_dsn: str, tmp_path: Path, batch_size: int = 4096, splits: int = 1, **spec: str
) -> PostgresSource:
    """A PostgreSQL source over ``spec`` (a table or a query), discovered."""
    source = PostgresSource(
        PostgresConnection(type="postgres", dsn=pg_dsn),  # type: ignore[arg-type]
        SplitSqlSource(connection="pg", splits=splits, **spec),  # type: ignore[arg-type]
        batch_size,
        splits,
        RunResources(tmp_path, "r1"),
    )
    source.discover()
    return source


def test_every_type_round_trips_postgres_to_duckdb_to_postgres(
    tmp_path: Path, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    sql(pg_dsn, ALL_TYPES)
    caplog.set_level(logging.WARNING, logger="deltaflow")
    result = run(
        tmp_path,
        pipeline(
            pg_dsn,
            """
        - step_id: out
          type: sync
          source: {connection: pg, table: public.alltypes}
          destination: {connection: wh, table: raw.alltypes}
        - step_id: back
          type: sync
          source: {connection: wh, table: raw.alltypes}
          destination: {connection: pg, table: copy.alltypes, nested: array,
                        primary_key: [id]}
        """,
        ),
    )

    assert result.ok, result.error
    columns = [
        r[0]
        for r in sql(
            pg_dsn,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'alltypes' AND table_schema = 'public' "
            "ORDER BY ordinal_position",
        )
    ]
    assert as_text(pg_dsn, "copy.alltypes", columns) == as_text(pg_dsn, "public.alltypes", columns)
    assert "column pt: PostgreSQL type point has no logical type; reading it as text" in (
        caplog.text
    )
    # exact types where both engines have them
    types = dict(
        sql(
            pg_dsn,
            "SELECT column_name, format_type(atttypid, atttypmod) FROM "
            "information_schema.columns JOIN pg_attribute ON attname = column_name "
            "AND attrelid = 'copy.alltypes'::regclass WHERE table_schema = 'copy'",
        )
    )
    assert types["n12"] == "numeric(12,2)"
    assert types["tstz"] == "timestamp with time zone"
    assert types["ai"] == "integer[]"
    assert types["iv"] == "interval"


#: the columns of ALL_TYPES whose Arrow form from DuckDB COPYs into PostgreSQL as it is
DIRECT = [
    "id",
    "s",
    "i",
    "n12",
    "r",
    "d",
    "b",
    "t",
    "by",
    "dt",
    "tm",
    "ts",
    "tstz",
    "iv",
    "j",
    "jb",
    "ai",
    "at",
]


def test_append_copies_straight_into_a_table_of_matching_types(
    tmp_path: Path, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    sql(pg_dsn, ALL_TYPES)
    kept = ", ".join(DIRECT)
    sql(
        pg_dsn,
        f"CREATE SCHEMA direct; CREATE TABLE direct.alltypes AS SELECT {kept} FROM alltypes "
        "WITH NO DATA; CREATE TABLE direct.staged (LIKE direct.alltypes, PRIMARY KEY (id))",
    )
    caplog.set_level(logging.DEBUG, logger="deltaflow.postgres")
    result = run(
        tmp_path,
        pipeline(
            pg_dsn,
            f"""
        - step_id: out
          type: sync
          source: {{connection: pg, table: public.alltypes}}
          destination: {{connection: wh, table: raw.alltypes}}
        - step_id: direct
          type: sync
          source: {{connection: wh, table: raw.alltypes, columns: [{kept}]}}
          destination: {{connection: pg, table: direct.alltypes, write_mode: append}}
        - step_id: staged
          type: sync
          source: {{connection: wh, table: raw.alltypes, columns: [{kept}]}}
          destination: {{connection: pg, table: direct.staged, write_mode: merge,
                        primary_key: [id]}}
        """,
        ),
    )

    assert result.ok, result.error
    assert "COPY straight into direct.alltypes" in caplog.text
    assert "for direct.staged" in caplog.text  # merge always stages
    expected = as_text(pg_dsn, "public.alltypes", DIRECT)
    assert as_text(pg_dsn, "direct.alltypes", DIRECT) == expected
    assert as_text(pg_dsn, "direct.staged", DIRECT) == expected


def test_parallel_ctid_splits_read_every_row_once(tmp_path: Path, pg_dsn: str) -> None:
    sql(
        pg_dsn,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 200000) g",
    )
    source = pg_source(pg_dsn, tmp_path, 10_000, table="big", splits=4)
    splits = source.splits()
    ids = [i for split in splits for b in source.read(split) for i in b.column("id").to_pylist()]
    RunResources.close(source.resources)

    assert len(splits) == 4
    assert sorted(ids) == list(range(1, 200_001))


SCANNED = """
CREATE TYPE feeling AS ENUM ('meh', 'fine');
CREATE DOMAIN pos AS integer CHECK (VALUE > 0);
CREATE TABLE public.scanned (
  id bigint PRIMARY KEY, s smallint, i integer, n12 numeric(12,2), n numeric,
  big numeric(40,5), r real, d double precision, b boolean, t text, v varchar(20),
  c char(3), u uuid, by bytea, tm time, ts timestamp, tstz timestamptz, j json,
  jb jsonb, ai integer[], at text[], af float8[], m feeling, p pos,
  n38 numeric(38,10), n20 numeric(20,4)
);
INSERT INTO scanned VALUES
 (1, 1, 2, 12.30, 123456789012345678901234567890.123456789,
  123456789012345678901234567890123.12345, 1.5, 'NaN', true, 'héllo ✓ 日本', 'v', 'ab',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff00', '23:59:59.999999',
  '2024-01-01 12:00:00.123456', '2024-01-01 12:00:00.123456+02', '{"a": 1}',
  '{"b": [1, 2], "c": {"d": null}}', '{1,NULL,3}', '{}', '{NaN,-Infinity,0.5}', 'fine', 5,
  '-9999999999999999999999999999.9999999999', '1234567890123456.7891'),
 (2, -32768, -2147483648, -0.01, 'NaN', -0.00001, '-Infinity', 'Infinity', false, '', '',
  '', NULL, '', '00:00:00', '1970-01-01 00:00:00', '0001-01-01 00:00:00+00', 'null', '[]',
  NULL, '{"a,b","c\\"d",NULL}', '{}', 'meh', 1, '0.0000000001', '-0.0001'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


def test_the_duckdb_scanner_reads_exactly_what_adbc_reads(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltaflow.connectors.postgres import scanner as postgres
    from deltaflow.errors import SourceError

    sql(pg_dsn, SCANNED)
    sql(
        pg_dsn,
        "INSERT INTO scanned (id, t) SELECT g, md5(g::text) FROM generate_series(4, 50000) g",
    )

    def read(splits: int, **spec: str) -> tuple[str, object]:
        source = pg_source(pg_dsn, tmp_path, splits=splits, **(spec or {"table": "scanned"}))
        batches = [b for split in source.splits() for b in source.read(split)]
        RunResources.close(source.resources)
        return source.reader, pa.Table.from_batches(batches).sort_by("id")

    query = "SELECT id, n12, n20, n38, n FROM scanned"  # types from a result, not the catalog
    reader, scanned = read(2)
    assert reader == "duckdb"
    query_reader, scanned_query = read(1, query=query)
    assert query_reader == "duckdb"
    monkeypatch.setattr(postgres, "scanner_extension", lambda: None)
    reader, adbc = read(2)
    assert reader == "adbc"
    adbc_query = read(1, query=query)[1]
    assert scanned_query.select(["id", "n12", "n20", "n38"]).equals(  # type: ignore[attr-defined]
        adbc_query.select(["id", "n12", "n20", "n38"])  # type: ignore[attr-defined]
    )

    assert scanned.schema == adbc.schema
    assert scanned.num_rows == 50_000
    for name in scanned.column_names:  # column by column, to name the one that differs
        if name != "n":  # repr: NaN equals NaN, and floats are written exactly
            assert repr(scanned.column(name).to_pylist()) == repr(adbc.column(name).to_pylist())
    # NUMERIC without precision is exact text; the scanner has PostgreSQL write it, which
    # spells NaN as PostgreSQL does, where ADBC writes "nan"
    spelled = [{"nan": "NaN"}.get(v, v) for v in adbc.column("n").to_pylist()]
    assert scanned.column("n").to_pylist() == spelled
    first = scanned.slice(0, 2).to_pylist()
    assert first[0]["n"] == "123456789012345678901234567890.123456789"  # exact, as text
    assert str(first[0]["big"]) == "123456789012345678901234567890123.12345"
    assert first[1]["n"] == "NaN"
    assert first[0]["by"] == b"\x00\xff\x00"
    assert first[0]["tstz"].isoformat() == "2024-01-01T10:00:00.123456+00:00"
    assert str(first[0]["n38"]) == "-9999999999999999999999999999.9999999999"
    assert str(first[1]["n20"]) == "-0.0001"

    # numeric(p,s) is decoded by the scanner, which would read NaN as 0: it stops instead
    sql(pg_dsn, "UPDATE scanned SET n12 = 'NaN' WHERE id = 77")
    monkeypatch.undo()
    with pytest.raises(SourceError, match="NaN in numeric column n12 has no exact decimal"):
        read(1)


def test_a_connection_lost_mid_read_is_a_clear_error(tmp_path: Path, pg_dsn: str) -> None:
    from deltaflow.errors import ConnectionLostError

    sql(
        pg_dsn,
        "CREATE TABLE lost AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 1000000) g",
    )
    source = pg_source(pg_dsn, tmp_path, 1000, table="lost")
    assert source.reader == "duckdb"
    batches = source.read(source.splits()[0])
    next(batches)
    sql(
        pg_dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND query LIKE 'COPY (SELECT%lost%'",
    )
    with pytest.raises(ConnectionLostError, match="reading PostgreSQL stream 'lost' failed") as e:
        for _ in batches:
            pass
    assert e.value.retryable  # a rerun resumes from what was committed


def test_a_connection_lost_mid_load_is_retryable_and_loads_nothing(
    tmp_path: Path, pg_dsn: str
) -> None:
    from deltaflow.config.models import DestinationSpec
    from deltaflow.connectors.registry import open_destination
    from deltaflow.errors import ConnectionLostError
    from deltaflow.schema.types import TableSchema

    schema = pa.schema([("id", pa.int64()), ("h", pa.string())])
    conn = PostgresConnection(type="postgres", dsn=pg_dsn)
    spec = DestinationSpec(connection="pg", table="public.cut", write_mode="append")
    destination = open_destination(conn, spec, RunResources(tmp_path, "run-1"))
    destination.prepare(TableSchema.from_arrow(schema))

    def batches() -> Iterator[pa.RecordBatch]:
        ids = list(range(10_000))
        yield pa.record_batch([ids, [str(i) for i in ids]], schema=schema)
        # the loading connection is the only other backend of this database
        sql(
            pg_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
            "datname = current_database() AND pid <> pg_backend_pid()",
        )
        yield pa.record_batch([ids, [str(i) for i in ids]], schema=schema)

    with pytest.raises(ConnectionLostError, match="connection was lost") as e:
        destination.load(pa.RecordBatchReader.from_batches(schema, batches()), "append", ())
    assert e.value.retryable
    assert sql(pg_dsn, "SELECT count(*) FROM cut") == [(0,)]


def test_a_scanner_read_stopped_early_cancels_its_copy(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the cancel, the rollback would read the rest of the COPY stream first.
    sql(pg_dsn, "CREATE TABLE early AS SELECT g AS id FROM generate_series(1, 200000) g")
    cancelled: list[int] = []
    cancel = PostgresSource._cancel

    def counting(self: PostgresSource, backend: int) -> None:
        cancelled.append(backend)
        cancel(self, backend)

    monkeypatch.setattr(PostgresSource, "_cancel", counting)
    source = pg_source(pg_dsn, tmp_path, 1000, table="early")
    batches = source.read(source.splits()[0])
    next(batches)
    batches.close()
    assert len(cancelled) == 1
    assert cancelled[0] > 0
    whole = sum(b.num_rows for b in source.read(source.splits()[0]))  # read to the end:
    assert whole == 200_000
    assert len(cancelled) == 1  # nothing to cancel


def test_a_table_the_scanner_cannot_carry_is_read_with_adbc(tmp_path: Path, pg_dsn: str) -> None:
    sql(pg_dsn, "CREATE TABLE dated (id int PRIMARY KEY, day date, took interval)")
    sql(pg_dsn, "INSERT INTO dated VALUES (1, 'infinity', '1 day'), (2, '2024-02-29', NULL)")
    source = pg_source(pg_dsn, tmp_path, table="dated")
    assert source.reader == "adbc"
    ids = [i for split in source.splits() for b in source.read(split) for i in b["id"].to_pylist()]
    assert ids == [1, 2]


def test_merge_into_postgres_is_idempotent(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "orders.csv").write_text("id,status\n1,new\n2,new\n2,paid\n3,new\n")
    text = files_to_pg(
        pg_dsn,
        """\
          - step_id: orders
            type: sync
            source: {connection: files, path: orders.csv}
            destination: {connection: pg, table: shop.orders, write_mode: merge,
                          primary_key: [id]}
        """,
    )
    first, second = run(tmp_path, text), run(tmp_path, text)

    assert first.ok, first.error
    assert second.ok, second.error
    assert sql(pg_dsn, "SELECT id, status FROM shop.orders ORDER BY id") == [
        (1, "new"),
        (2, "paid"),
        (3, "new"),
    ]  # the last row of a key wins
    assert first.steps[0].details == {"inserted": 3, "updated": 0}
    assert second.steps[0].details == {"inserted": 0, "updated": 3}


def test_replace_and_append(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n2\n")
    text = files_to_pg(
        pg_dsn,
        """\
          - {step_id: a, type: sync, source: {connection: files, path: a.csv},
              destination: {connection: pg, table: t, write_mode: MODE}}
        """,
    )
    run(tmp_path, text.replace("MODE", "append"))
    run(tmp_path, text.replace("MODE", "append"))
    assert sql(pg_dsn, "SELECT count(*) FROM t") == [(4,)]
    result = run(tmp_path, text.replace("MODE", "replace"))
    assert result.ok
    assert sql(pg_dsn, "SELECT count(*) FROM t") == [(2,)]
    assert result.steps[0].table_rows == 2


@pytest.mark.parametrize("mode", ["merge", "append"])  # staged, and COPY straight in
def test_identifiers_from_config_and_source_cannot_inject_sql(
    tmp_path: Path, pg_dsn: str, mode: str
) -> None:
    sql(pg_dsn, "CREATE TABLE victim (id int)")
    (tmp_path / "a.csv").write_text('id,"x""; DROP TABLE victim; --"\n1,2\n')
    result = run(
        tmp_path,
        files_to_pg(
            pg_dsn,
            """\
          - step_id: a
            type: sync
            source: {connection: files, path: a.csv}
            destination: {connection: pg, table: 's"; DROP TABLE victim; --.t"x',
                          write_mode: MODE, primary_key: [id]}
        """,
        ).replace("MODE", mode),
    )

    assert result.ok, result.error
    assert sql(pg_dsn, "SELECT count(*) FROM victim") == [(0,)]
    assert sql(
        pg_dsn, 'SELECT "x""; DROP TABLE victim; --" FROM "s""; DROP TABLE victim; --"."t""x"'
    ) == [(2,)]


def test_schema_evolution_adds_widens_and_rejects_narrowing(tmp_path: Path, pg_dsn: str) -> None:
    sql(pg_dsn, "CREATE TABLE t (id integer PRIMARY KEY, name varchar(3), amount bigint)")
    (tmp_path / "a.csv").write_text("id,name,extra\n5000000000,a long name,x\n")
    text = files_to_pg(
        pg_dsn,
        """\
          - {step_id: a, type: sync, source: {connection: files, path: a.csv},
              destination: {connection: pg, table: t, on_schema_change: POLICY}}
        """,
    )
    rejected = run(tmp_path, text.replace("POLICY", "add_columns"))
    assert not rejected.ok
    assert isinstance(rejected.error, SchemaError)
    assert "column id of t is integer" in str(rejected.error)
    assert "on_schema_change" in str(rejected.error)

    evolved = run(tmp_path, text.replace("POLICY", "evolve"))
    assert evolved.ok, evolved.error
    types = dict(
        sql(
            pg_dsn,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 't'",
        )
    )
    assert types == {"id": "bigint", "name": "text", "amount": "bigint", "extra": "text"}
    assert sql(pg_dsn, "SELECT id, name, extra FROM t") == [(5000000000, "a long name", "x")]

    (tmp_path / "a.csv").write_text("id,amount\n1,1.5\n")
    narrowing = run(tmp_path, text.replace("POLICY", "evolve"))
    assert not narrowing.ok
    assert "column amount of t is bigint in PostgreSQL but the source needs double precision" in (
        str(narrowing.error)
    )


def test_gin_index_and_drop_existing(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "e.jsonl").write_text('{"id": 1, "payload": {"a": 1}}\n')
    text = files_to_pg(
        pg_dsn,
        """\
          - step_id: e
            type: sync
            source: {connection: files, path: e.jsonl}
            destination:
              connection: pg
              table: events
              drop_existing: true
              primary_key: [id]
              indexes: [{columns: [payload], using: gin}]
        """,
    )
    assert run(tmp_path, text).ok
    assert run(tmp_path, text).ok  # dropped and reloaded: still one row
    assert sql(pg_dsn, "SELECT id, payload->>'a' FROM events") == [(1, "1")]
    indexes = sql(pg_dsn, "SELECT indexdef FROM pg_indexes WHERE tablename = 'events'")
    assert any("USING gin (payload)" in i[0] for i in indexes)


def test_connection_failure_is_retryable_and_hides_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_PASSWORD", "pw-Secret-8841")
    result = run(
        tmp_path,
        """\
        pipeline_id: m
        connections:
          pg: {type: postgres, host: 127.0.0.1, port: 1, user: me,
               password: "${env:PG_PASSWORD}", connect_timeout: 2}
          wh: {type: duckdb, path: wh.duckdb}
        steps:
          - {step_id: a, type: sync, source: {connection: pg, table: t},
             destination: {connection: wh, table: t}}
        """,
    )

    assert result.error is not None
    assert result.error.code == "CONNECTION_FAILED"
    assert result.error.retryable
    stored = (tmp_path / "runs.db").read_bytes()
    assert b"pw-Secret-8841" not in stored
    assert "pw-Secret-8841" not in str(result.run.error_message)
