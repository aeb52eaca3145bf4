"""Schema evolution of an existing BigQuery table: BigQuery's facts for the shared
decision (``deltaflow.schema.evolution``: add a column; relax REQUIRED; widen a type
where BigQuery can), and the ALTER TABLE statements that make each change.
"""

from __future__ import annotations

import logging
from typing import Any

from deltaflow.connectors.bigquery.table import DestinationTable
from deltaflow.schema.evolution import Change, EvolutionRules, plan_changes
from deltaflow.schema.mappings import bigquery_logical, bigquery_type, quote_backtick
from deltaflow.schema.types import LogicalType, TableSchema

log = logging.getLogger("deltaflow.bigquery")


class SchemaEvolution(DestinationTable):
    """An existing table brought to a new schema under ``on_schema_change``."""

    def _evolve(self, existing: Any, schema: TableSchema) -> None:
        """Add new columns; under ``evolve`` also relax REQUIRED to NULLABLE and widen
        types where BigQuery allows it (INT64 -> NUMERIC -> BIGNUMERIC, more digits).
        Every change is decided before the first ALTER TABLE runs."""
        fields = {f.name.lower(): f for f in existing.schema}  # names are case-insensitive
        policy = self.spec.on_schema_change
        for change in plan_changes(self.name, fields, schema, policy, EVOLUTION):
            self._query(self._alter_sql(change, fields))

    def _alter_sql(self, change: Change, fields: dict[str, Any]) -> str:
        """The ALTER TABLE statement of one change (a widening or relaxing one logged);
        ``fields`` are the existing ones by lower-case name."""
        name = quote_backtick(change.column)
        if change.action == "add":
            return f"ALTER TABLE {self.target} ADD COLUMN {name} {change.sql_type}"
        if change.action == "widen":
            have = bigquery_logical(fields[change.column.lower()])
            log.info(
                "widening %s.%s from %s to %s", self.name, change.column, have, change.sql_type
            )
            return f"ALTER TABLE {self.target} ALTER COLUMN {name} SET DATA TYPE {change.sql_type}"
        log.info("relaxing %s.%s to NULLABLE", self.name, change.column)
        return f"ALTER TABLE {self.target} ALTER COLUMN {name} DROP NOT NULL"


def _widened(have: LogicalType, incoming: LogicalType) -> str | None:
    """None when a column of type ``have`` holds ``incoming`` as it is; else the type to
    widen it to, or '' when BigQuery cannot widen it so."""
    current, wanted = bigquery_type(have), bigquery_type(incoming)
    if current == wanted:
        return None
    numeric = ("decimal",)
    if have.kind in numeric and incoming.kind in numeric:
        h_scale, i_scale = have.scale or 0, incoming.scale or 0
        if have.precision is None or incoming.precision is None:
            return None if have.precision is None else ""
        digits = max(have.precision - h_scale, incoming.precision - i_scale)
        scale = max(h_scale, i_scale)
        both = bigquery_type(LogicalType("decimal", precision=digits + scale, scale=scale))
        return None if both == current else both
    base, wanted_base = current.split("(")[0], wanted.split("(")[0]
    return wanted_base if wanted_base in _WIDER.get(base, ()) else ""


#: BigQuery type -> the types ALTER COLUMN SET DATA TYPE can widen it to
_WIDER = {"INT64": ("NUMERIC", "BIGNUMERIC", "FLOAT64"), "NUMERIC": ("BIGNUMERIC", "FLOAT64")}


#: BigQuery's facts for the schema-evolution decision (an existing column is a SchemaField)
EVOLUTION: EvolutionRules[Any] = EvolutionRules(
    engine="BigQuery",
    type_sql=bigquery_type,
    current_sql=lambda f: bigquery_type(bigquery_logical(f)),
    widening=lambda f, t: _widened(bigquery_logical(f), t),
    required=lambda f: f.mode == "REQUIRED",
    case_sensitive=False,
    required_sql="REQUIRED",
    nullable_sql="NULLABLE",
)
