"""The schema-evolution decision, written once for every engine.

Given a table's current columns, the source's schema and ``destination.on_schema_change``,
``plan_changes`` decides which columns to add, widen or relax, or raises the
``SCHEMA_CHANGE_REJECTED`` error naming the first column the policy does not allow:

- ``fail``         any difference stops the load;
- ``add_columns``  columns the table lacks are added; any other difference stops it;
- ``evolve``       also widens types and relaxes NOT NULL, where the engine can in place.

The engine states its facts as data (``EvolutionRules``): how it spells a type, whether
an existing column holds an incoming type or can be widened to it, whether its names are
case-sensitive. It renders its own DDL for the ``Change``s returned. Every change is
decided before any DDL runs, so a rejected schema leaves the table as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from deltaflow.errors import Code, SchemaError
from deltaflow.schema.types import Column, LogicalType, TableSchema

Policy = Literal["fail", "add_columns", "evolve"]

#: an existing column, as the engine describes it
C = TypeVar("C")


@dataclass(frozen=True)
class Change:
    """One change to the table: ``add`` a column of ``sql_type``, ``widen`` a column to
    ``sql_type``, or ``relax`` a column's NOT NULL (``sql_type`` empty)."""

    action: Literal["add", "widen", "relax"]
    column: str
    sql_type: str = ""


def holds(current: object, incoming: LogicalType) -> str | None:
    """The default widening rule: every existing column takes the incoming type as it is
    (the engine converts, or rejects, the values when it loads them)."""
    return None


def never_required(current: object) -> bool:
    """The default nullability rule: no existing column needs its NOT NULL relaxed."""
    return False


@dataclass(frozen=True)
class EvolutionRules(Generic[C]):
    """What an engine says about its column types, for ``plan_changes``."""

    engine: str
    """The engine's name, in error messages ('PostgreSQL')."""
    type_sql: Callable[[LogicalType], str]
    """The engine's type for a logical type, as its DDL writes it."""
    current_sql: Callable[[C], str]
    """An existing column's type, as error messages show it."""
    widening: Callable[[C, LogicalType], str | None] = holds
    """None when the existing column holds the incoming type as it is; else the type to
    widen it to in place, or '' when the engine cannot widen it so."""
    required: Callable[[C], bool] = never_required
    """Whether the existing column is NOT NULL in a way a nullable source column must relax."""
    case_sensitive: bool = True
    """Whether ``Name`` and ``name`` are two columns."""
    required_sql: str = "NOT NULL"
    nullable_sql: str = "NULL"
    """How error messages name a required and a nullable column (BigQuery: REQUIRED)."""


def plan_changes(
    table: str,
    existing: Mapping[str, C],
    incoming: TableSchema,
    policy: Policy,
    rules: EvolutionRules[C],
) -> list[Change]:
    """The changes that let ``table`` (its ``existing`` columns by name) take the
    ``incoming`` schema under ``policy``, in the incoming schema's column order.

    Columns the table has and the source lacks are kept. Raises the SchemaError of
    ``schema_change_error`` for the first difference ``policy`` does not allow."""
    if not rules.case_sensitive:
        existing = {name.lower(): column for name, column in existing.items()}
    changes: list[Change] = []
    for column in incoming.columns:
        current = existing.get(column.name if rules.case_sensitive else column.name.lower())
        if current is None:
            changes.append(_added(table, column, policy, rules))
        else:
            changes += _changed(table, current, column, policy, rules)
    return changes


def _added(table: str, column: Column, policy: Policy, rules: EvolutionRules[C]) -> Change:
    wanted = rules.type_sql(column.type)
    if policy == "fail":
        raise schema_change_error(table, rules.engine, column.name, "(missing)", wanted)
    return Change("add", column.name, wanted)


def _changed(
    table: str, current: C, column: Column, policy: Policy, rules: EvolutionRules[C]
) -> list[Change]:
    changes = []
    wider = rules.widening(current, column.type)
    if wider is not None:
        if policy != "evolve" or not wider:
            have, wanted = rules.current_sql(current), rules.type_sql(column.type)
            raise schema_change_error(table, rules.engine, column.name, have, wanted)
        changes.append(Change("widen", column.name, wider))
    if column.nullable and rules.required(current):
        if policy != "evolve":
            raise schema_change_error(
                table, rules.engine, column.name, rules.required_sql, rules.nullable_sql
            )
        changes.append(Change("relax", column.name))
    return changes


def schema_change_error(
    table: str, engine: str, column: str, current: str, wanted: str
) -> SchemaError:
    """The table's column differs from the source's in a way the policy does not allow."""
    return SchemaError(
        f"column {column} of {table} is {current} in {engine} but the source needs {wanted}",
        hint="set destination.on_schema_change: 'evolve' (add columns and widen types), "
        "'add_columns' (only add), or 'fail'; a narrowing change needs a manual migration "
        "or drop_existing: true",
        code=Code.SCHEMA_CHANGE_REJECTED,
    )
