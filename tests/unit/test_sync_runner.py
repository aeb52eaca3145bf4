"""When a sync must keep the source's batch order, and when it may take batches as they come."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from deltaflow.config.models import SyncStep
from deltaflow.schema.types import TableSchema
from deltaflow.sync.streams import order_matters as _order_matters

SCHEMA = pa.schema(
    [pa.field("id", pa.int64()), pa.field("region", pa.string()), pa.field("v", pa.float64())]
)


def step(write_mode: str) -> SyncStep:
    return SyncStep.model_validate(
        {
            "step_id": "s",
            "type": "sync",
            "source": {"connection": "src", "table": "t"},
            "destination": {
                "connection": "dst",
                "table": "t",
                "write_mode": write_mode,
                "primary_key": ["id"] if write_mode == "merge" else [],
            },
        }
    )


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_append_and_replace_take_batches_as_they_come(mode: str) -> None:
    assert not _order_matters(step(mode), TableSchema.from_arrow(SCHEMA), ())


def test_merge_keeps_order_when_the_source_may_repeat_a_key() -> None:
    # No primary key known at the source (a file, a query): the last row of a key wins,
    # so "last" must mean the same on every run.
    assert _order_matters(step("merge"), TableSchema.from_arrow(SCHEMA), ("id",))


def test_merge_keeps_order_when_the_source_key_is_not_inside_the_merge_key() -> None:
    schema = TableSchema.from_arrow(SCHEMA, primary_key=("id", "region"))
    assert _order_matters(step("merge"), schema, ("id",))


def test_merge_on_the_source_key_cannot_see_a_key_twice() -> None:
    schema = TableSchema.from_arrow(SCHEMA, primary_key=("id",))
    assert not _order_matters(step("merge"), schema, ("id",))
    assert not _order_matters(step("merge"), schema, ("id", "region"))


def _run_files_to_duckdb(tmp_path: Path, csv: str, parse: str) -> object:
    import textwrap

    from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline

    (tmp_path / "patents.csv").write_text(csv)
    (tmp_path / "p.yml").write_text(
        textwrap.dedent(f"""\
        pipeline_id: p
        connections:
          files: {{type: files}}
          wh: {{type: duckdb, path: wh.duckdb}}
        steps:
          - step_id: patents
            type: sync
            source: {{connection: files, path: patents.csv}}
            destination: {{connection: wh, table: patents, write_mode: replace}}
            parse_dates: {parse}
        """)
    )
    return run_pipeline(
        load_pipeline(tmp_path / "p.yml"), context=RunContext(), store=RunStore(tmp_path / "r.db")
    )


def test_parse_dates_turns_yyyymmdd_text_into_dates(tmp_path: Path) -> None:
    import datetime as dt

    import duckdb

    result = _run_files_to_duckdb(
        tmp_path, "id,filed\n1,20240131\n2,\n3,19991231\n", "{filed: '%Y%m%d'}"
    )

    assert result.ok, result.error  # type: ignore[attr-defined]
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        stored = con.sql("SELECT id, filed, typeof(filed) FROM patents ORDER BY id").fetchall()
    assert stored == [
        (1, dt.date(2024, 1, 31), "DATE"),
        (2, None, "DATE"),
        (3, dt.date(1999, 12, 31), "DATE"),
    ]


def test_a_value_that_is_not_a_date_stops_the_step_naming_it(tmp_path: Path) -> None:
    result = _run_files_to_duckdb(
        tmp_path, "id,filed\n1,20240131\n2,2024-13-45\n", "{filed: '%Y%m%d'}"
    )

    assert not result.ok  # type: ignore[attr-defined]
    message = str(result.error)  # type: ignore[attr-defined]
    assert "column filed: '2024-13-45' is not a date in the format '%Y%m%d'" in message
    assert _count(tmp_path) == 0  # nothing loaded


def test_parse_dates_names_an_unknown_column(tmp_path: Path) -> None:
    result = _run_files_to_duckdb(tmp_path, "id,filed\n1,20240131\n", "{filde: '%Y%m%d'}")

    assert not result.ok  # type: ignore[attr-defined]
    assert "parse_dates names 'filde'" in str(result.error)  # type: ignore[attr-defined]
    assert "filed" in str(result.error)  # type: ignore[attr-defined]


def _count(tmp_path: Path) -> int:
    import duckdb

    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        found = con.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'patents'")
        if not found.fetchall()[0][0]:
            return 0
        return int(con.sql("SELECT count(*) FROM patents").fetchall()[0][0])
