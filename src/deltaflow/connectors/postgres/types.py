"""PostgreSQL's type facts for schema evolution (``deltaflow.schema.evolution``): which
existing column holds an incoming type as it is, and which it can be widened to in place
(``ALTER COLUMN ... TYPE``)."""

from __future__ import annotations

from collections.abc import Callable

from deltaflow.connectors.postgres.catalog import PgColumn
from deltaflow.schema.evolution import EvolutionRules
from deltaflow.schema.types import LogicalType

#: logical kind -> kinds it can widen to in place (ALTER COLUMN ... TYPE)
WIDENINGS: dict[str, tuple[str, ...]] = {
    "int8": ("int16", "int32", "int64", "decimal"),
    "int16": ("int32", "int64", "decimal"),
    "int32": ("int64", "decimal"),
    "int64": ("decimal",),
    "float32": ("float64",),
}


def holds(current: PgColumn, incoming: LogicalType) -> bool:
    """Whether the existing column can take the incoming type without change."""
    have = current.logical
    if current.pg_type.startswith("character varying(") and incoming.kind == "string":
        return False  # a bounded varchar may be too short: widen it to text
    if have == incoming or (
        have.kind in ("json", "string") and incoming.kind in ("json", "string", "struct", "list")
    ):
        return True
    if have.kind == "decimal" and incoming.kind == "decimal":
        return have.precision is None or (
            incoming.precision is not None
            and (have.scale or 0) >= (incoming.scale or 0)
            and have.precision - (have.scale or 0) >= incoming.precision - (incoming.scale or 0)
        )
    if have.kind == "timestamp" and incoming.kind == "timestamp":
        return bool(have.tz) == bool(incoming.tz)
    return (incoming.kind in WIDENINGS and have.kind in WIDENINGS[incoming.kind]) or (
        have.kind == "list" and incoming.kind == "list"
    )


def widens(current: PgColumn, incoming: LogicalType) -> bool:
    """Whether the existing column can be widened in place to take the incoming type."""
    have = current.logical
    if have.kind == "string" and incoming.kind == "string":
        return True  # varchar(n) -> text
    if have.kind == "decimal" and incoming.kind == "decimal":
        return incoming.precision is None or have.precision is not None
    return incoming.kind in WIDENINGS.get(have.kind, ())


def evolution(pg_type: Callable[[LogicalType], str]) -> EvolutionRules[PgColumn]:
    """PostgreSQL's facts for schema evolution, with ``pg_type`` the destination's type
    for a logical type (nested data as jsonb or arrays, as the destination says)."""

    def widening(current: PgColumn, incoming: LogicalType) -> str | None:
        if holds(current, incoming):
            return None
        return pg_type(incoming) if widens(current, incoming) else ""

    return EvolutionRules(
        engine="PostgreSQL",
        type_sql=pg_type,
        current_sql=lambda column: column.pg_type,
        widening=widening,
    )
