"""DuckDB's type facts for schema evolution (``deltaflow.schema.evolution``).

DuckDB converts values on insert (``INSERT ... BY NAME`` casts them), so an existing
column takes any incoming type it can cast to, as DuckDB always did. What evolution adds
is the widenings DuckDB does in place (``ALTER COLUMN ... TYPE``) when the source's type
is wider than the column's: a larger integer, DOUBLE for FLOAT, a decimal with more
digits. Under ``evolve`` the column is widened; under ``add_columns`` and ``fail`` the
difference is refused.
"""

from __future__ import annotations

import re

from deltaflow.schema.evolution import EvolutionRules
from deltaflow.schema.mappings import duckdb_type
from deltaflow.schema.types import LogicalType

#: a column's type (as information_schema spells it) -> the wider types it can be
#: altered to in place, as ``duckdb_type`` spells them
WIDER: dict[str, tuple[str, ...]] = {
    "TINYINT": ("SMALLINT", "INTEGER", "BIGINT"),
    "SMALLINT": ("INTEGER", "BIGINT"),
    "INTEGER": ("BIGINT",),
    "UTINYINT": ("USMALLINT", "UINTEGER", "UBIGINT"),
    "USMALLINT": ("UINTEGER", "UBIGINT"),
    "UINTEGER": ("UBIGINT",),
    "FLOAT": ("DOUBLE",),
}

_DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")

#: DuckDB's widest decimal
MAX_DIGITS = 38


def widening(current: str, incoming: LogicalType) -> str | None:
    """None when a column of type ``current`` takes ``incoming`` (itself, or by the
    insert's cast); else the type DuckDB widens it to in place."""
    wanted = duckdb_type(incoming)
    if incoming.kind == "null" or wanted == current:
        return None  # an all-NULL column fits any type
    if wanted in WIDER.get(current, ()):
        return wanted
    return _wider_decimal(current, wanted)


def _wider_decimal(current: str, wanted: str) -> str | None:
    """The decimal that holds both ``current`` and ``wanted`` values, when both are
    decimals and ``current`` is too narrow."""
    have, need = _DECIMAL.fullmatch(current), _DECIMAL.fullmatch(wanted)
    if have is None or need is None:
        return None
    h_scale, i_scale = int(have[2]), int(need[2])
    h_whole, i_whole = int(have[1]) - h_scale, int(need[1]) - i_scale
    if i_scale <= h_scale and i_whole <= h_whole:
        return None  # it fits
    scale = max(h_scale, i_scale)
    precision = max(h_whole, i_whole) + scale
    if precision > MAX_DIGITS:
        return None  # DuckDB cannot widen it so: the insert casts, as before
    return f"DECIMAL({precision},{scale})"


#: DuckDB's facts for schema evolution: names are case-insensitive
EVOLUTION: EvolutionRules[str] = EvolutionRules(
    engine="DuckDB",
    type_sql=duckdb_type,
    current_sql=str,
    widening=widening,
    case_sensitive=False,
)
