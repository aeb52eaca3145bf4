"""Source options: one model per family of connectors, chosen by the connection's type."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from deltaflow.config import load_pipeline, validate_file
from deltaflow.config.connections import CONNECTION_MODELS
from deltaflow.config.models import SyncStep
from deltaflow.config.sources import (
    FileSource,
    MongoSource,
    SourceBase,
    SplitSqlSource,
    SqlSource,
)

CONNECTIONS = """\
pipeline_id: p                    #  1
connections:                      #  2
  wh: {type: duckdb}              #  3
  pg: {type: postgres}            #  4
  bq: {type: bigquery, project: p, dataset: d}   #  5
  files_in: {type: files}         #  6
  mongo: {type: mongodb, uri: "mongodb://127.0.0.1", database: shop}  #  7
steps:                            #  8
  - step_id: s                    #  9
    type: sync                    # 10
    source:                       # 11
"""
DESTINATION = "    destination: {connection: wh, table: t}\n"

#: a source each connection type takes, and the model that holds it
SOURCES = {
    "wh": ("connection: wh\ntable: main.orders\n", SqlSource),
    "pg": ("connection: pg\ntable: public.orders\nsplits: 4\n", SplitSqlSource),
    "bq": ("connection: bq\nquery: select 1 as id\n", SqlSource),
    "files_in": ("connection: files_in\npath: orders.csv\nformat: csv\n", FileSource),
    "mongo": ("connection: mongo\ncollection: orders\nschema: {price: int}\n", MongoSource),
}


def pipeline(tmp_path: Path, source: str) -> Path:
    """The pipeline of CONNECTIONS with ``source`` (YAML lines under 'source:')."""
    path = tmp_path / "pipeline.yml"
    body = textwrap.indent(textwrap.dedent(source), "      ")
    path.write_text(CONNECTIONS + body + DESTINATION, encoding="utf-8")
    return path


def test_each_connection_type_names_its_source_model() -> None:
    assert {kind: model.source_model for kind, model in CONNECTION_MODELS.items()} == {
        "bigquery": SqlSource,
        "duckdb": SqlSource,
        "files": FileSource,
        "mongodb": MongoSource,
        "postgres": SplitSqlSource,
    }


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_a_source_is_validated_by_its_connections_model(tmp_path: Path, name: str) -> None:
    text, model = SOURCES[name]
    loaded = load_pipeline(pipeline(tmp_path, text), resolve_secrets=False)
    [step] = loaded.pipeline.steps
    assert isinstance(step, SyncStep)
    assert type(step.source) is model


def test_a_sql_source_without_table_or_query_is_refused_at_its_line(tmp_path: Path) -> None:
    path = pipeline(tmp_path, "connection: wh\ncolumns: [id]\n")
    [d] = validate_file(path)
    assert (d.file, d.line, d.path) == (str(path), 11, "steps[0].source")
    assert d.message == "a duckdb source needs 'query' or 'table'"
    assert d.hint == "add 'query' or 'table' under steps[0].source"


def test_a_files_source_with_collection_names_the_options_files_sources_take(
    tmp_path: Path,
) -> None:
    path = pipeline(tmp_path, "connection: files_in\npath: a.csv\ncollection: orders\n")
    [d] = validate_file(path)
    assert (d.file, d.line, d.path) == (str(path), 14, "steps[0].source.collection")
    assert d.message == "'collection' does not apply to a files source"
    assert d.hint == "files sources take: columns, csv, format, limit, path, stream"


def test_splits_are_a_postgres_option_only(tmp_path: Path) -> None:
    path = pipeline(tmp_path, "connection: wh\ntable: t\nsplits: 4\n")
    [d] = validate_file(path)
    assert (d.line, d.path) == (14, "steps[0].source.splits")
    assert d.message == "'splits' does not apply to a duckdb source"
    assert validate_file(pipeline(tmp_path, "connection: pg\ntable: t\nsplits: 4\n")) == []


def test_a_missing_option_and_a_foreign_one_are_reported_together(tmp_path: Path) -> None:
    found = validate_file(pipeline(tmp_path, "connection: mongo\ntable: orders\n"))
    assert {(d.path, d.message) for d in found} == {
        ("steps[0].source", "a mongodb source needs 'collection'"),
        ("steps[0].source.table", "'table' does not apply to a mongodb source"),
    }


def test_a_source_of_an_undefined_connection_reports_only_the_connection(tmp_path: Path) -> None:
    [d] = validate_file(pipeline(tmp_path, "connection: nope\npath: a.csv\ntable: t\n"))
    assert d.path == "steps[0].source.connection"
    assert d.message.startswith("connection 'nope' is not defined.")


def test_the_option_a_family_needs_is_typed_as_present() -> None:
    assert FileSource(connection="f", path="a.csv").path == "a.csv"
    assert MongoSource.model_validate({"connection": "m", "collection": "c"}).collection == "c"
    assert SqlSource(connection="w", query="select 1").table_name == ""
    assert SqlSource(connection="w", table="main.t").table_name == "main.t"
    with pytest.raises(ValidationError, match="a source needs 'query' or 'table'"):
        SqlSource(connection="w")
    with pytest.raises(ValidationError, match="a source needs 'path'"):
        FileSource.model_validate({"connection": "f"})


def test_a_step_validated_on_its_own_takes_the_family_that_fits_its_keys() -> None:
    def source(**options: object) -> SourceBase:
        step = SyncStep.model_validate(
            {
                "step_id": "s",
                "type": "sync",
                "source": {"connection": "c", **options},
                "destination": {"connection": "d", "table": "t"},
            }
        )
        assert step.source is not None
        return step.source

    assert type(source(table="t")) is SqlSource
    assert type(source(table="t", splits=2)) is SplitSqlSource
    assert type(source(path="a.csv")) is FileSource
    assert type(source(collection="c", sample_size=10)) is MongoSource
