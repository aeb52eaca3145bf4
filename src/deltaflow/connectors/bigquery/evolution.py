"""Schema evolution of an existing BigQuery table: which change each policy allows
(add a column; relax REQUIRED; widen a type where BigQuery can), and the ALTER TABLE
statements that make it.
"""

from __future__ import annotations

import logging
from typing import Any

from deltaflow.connectors._common import schema_change_error
from deltaflow.connectors.bigquery.table import DestinationTable
from deltaflow.schema.mappings import bigquery_logical, bigquery_type, quote_backtick
from deltaflow.schema.types import LogicalType, TableSchema

log = logging.getLogger("deltaflow.bigquery")


class SchemaEvolution(DestinationTable):
    """An existing table brought to a new schema under ``on_schema_change``."""

    def _evolve(self, existing: Any, schema: TableSchema) -> None:
        """Add new columns; under ``evolve`` also relax REQUIRED to NULLABLE and widen
        types where BigQuery allows it (INT64 -> NUMERIC -> BIGNUMERIC, more digits)."""
        policy = self.spec.on_schema_change
        fields = {f.name.lower(): f for f in existing.schema}
        for column in schema.columns:
            field = fields.get(column.name.lower())
            wanted = bigquery_type(column.type)
            name = quote_backtick(column.name)
            if field is None:
                if policy == "fail":
                    raise schema_change_error(
                        self.name, "BigQuery", column.name, "(missing)", wanted
                    )
                self._query(f"ALTER TABLE {self._target()} ADD COLUMN {name} {wanted}")
                continue
            have = bigquery_logical(field)
            wider = _widened(have, column.type)
            if wider is not None:
                if policy != "evolve" or not wider:
                    current = bigquery_type(have)
                    raise schema_change_error(self.name, "BigQuery", column.name, current, wanted)
                log.info("widening %s.%s from %s to %s", self.name, column.name, have, wider)
                self._query(
                    f"ALTER TABLE {self._target()} ALTER COLUMN {name} SET DATA TYPE {wider}"
                )
            if field.mode == "REQUIRED" and column.nullable:
                if policy != "evolve":
                    raise schema_change_error(
                        self.name, "BigQuery", column.name, "REQUIRED", "NULLABLE"
                    )
                log.info("relaxing %s.%s to NULLABLE", self.name, column.name)
                self._query(f"ALTER TABLE {self._target()} ALTER COLUMN {name} DROP NOT NULL")


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
