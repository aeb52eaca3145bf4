"""The schema-evolution decision, engine by engine facts (no database needed)."""

from __future__ import annotations

import pytest

from deltaflow.errors import SchemaError
from deltaflow.schema.evolution import Change, EvolutionRules, plan_changes
from deltaflow.schema.types import Column, LogicalType, TableSchema

INT32, INT64 = LogicalType("int32"), LogicalType("int64")


def widen_ints(current: LogicalType, incoming: LogicalType) -> str | None:
    if current == incoming:
        return None
    return "BIGINT" if (current, incoming) == (INT32, INT64) else ""


RULES: EvolutionRules[LogicalType] = EvolutionRules(
    engine="Test",
    type_sql=lambda t: {"int32": "INTEGER", "int64": "BIGINT"}[t.kind],
    current_sql=lambda t: t.kind,
    widening=widen_ints,
)
TABLE = {"id": INT32}


def schema(*columns: Column) -> TableSchema:
    return TableSchema(columns)


def test_evolve_adds_and_widens_in_the_source_order() -> None:
    incoming = schema(Column("new", INT32), Column("id", INT64))
    assert plan_changes("t", TABLE, incoming, "evolve", RULES) == [
        Change("add", "new", "INTEGER"),
        Change("widen", "id", "BIGINT"),
    ]


def test_add_columns_adds_but_refuses_a_widening() -> None:
    assert plan_changes("t", TABLE, schema(Column("new", INT32)), "add_columns", RULES) == [
        Change("add", "new", "INTEGER")
    ]
    with pytest.raises(SchemaError, match="column id of t is int32 in Test but the source needs"):
        plan_changes("t", TABLE, schema(Column("id", INT64)), "add_columns", RULES)


def test_fail_refuses_a_new_column_and_a_narrowing_fails_under_every_policy() -> None:
    with pytest.raises(SchemaError, match=r"column new of t is \(missing\)"):
        plan_changes("t", TABLE, schema(Column("new", INT32)), "fail", RULES)
    narrower = {"id": INT64}
    with pytest.raises(SchemaError, match="is int64 in Test but the source needs INTEGER"):
        plan_changes("t", narrower, schema(Column("id", INT32)), "evolve", RULES)


def test_required_columns_are_relaxed_under_evolve_only() -> None:
    rules = EvolutionRules(
        engine="BigQuery",
        type_sql=lambda t: "INT64",
        current_sql=lambda t: "INT64",
        required=lambda current: True,
        required_sql="REQUIRED",
        nullable_sql="NULLABLE",
    )
    incoming = schema(Column("id", INT64, nullable=True))
    assert plan_changes("t", {"id": INT64}, incoming, "evolve", rules) == [Change("relax", "id")]
    with pytest.raises(SchemaError, match="is REQUIRED in BigQuery but the source needs NULLABLE"):
        plan_changes("t", {"id": INT64}, incoming, "add_columns", rules)


def test_names_match_case_insensitively_when_the_engine_says_so() -> None:
    folding: EvolutionRules[LogicalType] = EvolutionRules(
        engine="Test", type_sql=RULES.type_sql, current_sql=RULES.current_sql, case_sensitive=False
    )
    assert plan_changes("t", {"ID": INT32}, schema(Column("id", INT32)), "fail", folding) == []
    assert plan_changes("t", {"ID": INT32}, schema(Column("id", INT32)), "evolve", RULES) == [
        Change("add", "id", "INTEGER")
    ]


def test_bigquery_rules_widen_relax_and_refuse_with_bigquery_names() -> None:
    from google.cloud.bigquery import SchemaField

    from deltaflow.connectors.bigquery.evolution import EVOLUTION

    table = {"QTY": SchemaField("QTY", "INTEGER", mode="REQUIRED"), "v": SchemaField("v", "FLOAT")}
    incoming = schema(
        Column("note", LogicalType("string")),
        Column("qty", LogicalType("decimal", precision=30, scale=2)),
    )
    assert plan_changes("d.t", table, incoming, "evolve", EVOLUTION) == [
        Change("add", "note", "STRING"),
        Change("widen", "qty", "NUMERIC"),
        Change("relax", "qty"),
    ]
    with pytest.raises(SchemaError, match=r"qty of d\.t is REQUIRED in BigQuery .* needs NULLABLE"):
        plan_changes("d.t", table, schema(Column("qty", INT64)), "add_columns", EVOLUTION)
    with pytest.raises(SchemaError, match=r"v of d\.t is FLOAT64 in BigQuery .* needs INT64"):
        plan_changes("d.t", table, schema(Column("v", INT64, False)), "evolve", EVOLUTION)
