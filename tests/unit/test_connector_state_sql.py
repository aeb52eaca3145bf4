"""The state table's SQL from each engine's facts (no database needed)."""

from __future__ import annotations

from deltaflow.connectors._sql.state import STATE_COLUMNS, StateSQL
from deltaflow.schema.mappings import quote_backtick


def test_the_default_facts_upsert_with_on_conflict_and_dollar_parameters() -> None:
    sql = StateSQL()
    (upsert,) = sql.put('"raw"."_deltaflow_state"')
    assert upsert.startswith(
        f'INSERT INTO "raw"."_deltaflow_state" ({STATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) '
        "ON CONFLICT (state_key) DO UPDATE SET cursor = excluded.cursor"
    )
    assert sql.read("s") == (
        f"SELECT {STATE_COLUMNS} FROM s WHERE starts_with(state_key, $1) ORDER BY state_key"
    )
    assert sql.deletes("s") == ["DELETE FROM s WHERE starts_with(state_key, $1)"]


def test_named_parameters_and_a_delete_then_insert_upsert_as_bigquery_writes_them() -> None:
    columns = STATE_COLUMNS.replace("cursor", "`cursor`")
    sql = StateSQL(
        quote=quote_backtick,
        placeholder=lambda n: f"@p{n}",
        upsert=(
            "DELETE FROM {table} WHERE state_key = {key}",
            f"INSERT INTO {{table}} ({columns}) VALUES ({{values}})",
        ),
        delete=(
            "SELECT count(*) FROM {table} WHERE STARTS_WITH(state_key, {prefix})",
            "DELETE FROM {table} WHERE STARTS_WITH(state_key, {prefix})",
        ),
    )
    assert sql.put("`p.d.s`") == [
        "DELETE FROM `p.d.s` WHERE state_key = @p0",
        f"INSERT INTO `p.d.s` ({columns}) VALUES (@p0, @p1, @p2, @p3, @p4, @p5)",
    ]
    assert sql.deletes("`p.d.s`")[0] == (
        "SELECT count(*) FROM `p.d.s` WHERE STARTS_WITH(state_key, @p0)"
    )
