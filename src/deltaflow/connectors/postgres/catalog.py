"""What PostgreSQL's catalog says about a relation: its columns, their logical types and
how to read them, and its primary key."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.postgres.client import fetch
from deltaflow.schema.mappings import postgres_logical
from deltaflow.schema.types import LogicalType

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("deltaflow.postgres")

COLUMNS_SQL = """
SELECT a.attname, a.attnotnull, a.atttypmod, t.typname, t.typtype, t.typcategory,
       coalesce(bt.typname, ''), coalesce(et.typname, ''), coalesce(ebt.typname, ''),
       coalesce(et.typtype, ''), format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
LEFT JOIN pg_type et ON et.oid = coalesce(nullif(bt.typelem, 0), t.typelem)
     AND coalesce(bt.typcategory, t.typcategory) = 'A'
LEFT JOIN pg_type ebt ON ebt.oid = et.typbasetype AND et.typtype = 'd'
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

PRIMARY_KEY_SQL = """
SELECT a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
ORDER BY k.ord
"""


@dataclass(frozen=True)
class PgColumn:
    """A column as the catalog describes it, and how to read it."""

    name: str
    logical: LogicalType
    nullable: bool
    pg_type: str  # format_type(), e.g. 'numeric(12,2)'
    read_as: str | None  # a cast applied when reading ('text' for types Arrow cannot carry)


def column_from_row(row: tuple[Any, ...]) -> PgColumn:
    """A column from a row of ``COLUMNS_SQL``."""
    (
        name,
        notnull,
        typmod,
        typname,
        typtype,
        category,
        base,
        elem,
        elem_base,
        elem_typtype,
        formatted,
    ) = row
    scalar = base or typname
    if typtype == "e":
        logical: LogicalType | None = LogicalType("string")
    elif (category == "A" or elem) and elem:
        item = _scalar_logical(elem_base or elem, elem_typtype, typmod)
        logical = LogicalType("list", item=item) if item else None
    else:
        logical = postgres_logical(scalar, typmod)
    if logical is None:
        log.warning(
            "column %s: PostgreSQL type %s has no logical type; reading it as text", name, formatted
        )
    read_as = None  # ADBC carries the type as is
    if logical is None or logical.kind == "uuid" or scalar == "bpchar":
        read_as = "text"  # bpchar: without its pad spaces, as PostgreSQL casts it
    elif (
        logical.kind == "list"
        and logical.item is not None
        and (logical.item.kind == "uuid" or elem_typtype == "e")
    ):
        read_as = "text[]"
    logical = logical or LogicalType("string")
    return PgColumn(name, logical, not notnull, formatted, read_as)


def _scalar_logical(typname: str, typtype: str, typmod: int) -> LogicalType | None:
    if typtype == "e":
        return LogicalType("string")
    return postgres_logical(typname, typmod)


def describe(cur: Any, schema: str, table: str) -> tuple[list[PgColumn], tuple[str, ...]]:
    """The table's columns and primary key, or ([], ()) when it does not exist."""
    columns = [column_from_row(r) for r in fetch(cur, COLUMNS_SQL, (schema, table))]
    keys = tuple(r[0] for r in fetch(cur, PRIMARY_KEY_SQL, (schema, table)))
    return columns, keys


def result_columns(schema: pa.Schema) -> list[PgColumn]:
    """A query's columns, from the type ADBC records on each field of its result."""
    columns = []
    for field in schema:
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        typname = meta.get("POSTGRESQL:type", "")
        typmod = int(meta.get("POSTGRESQL:typmod", "-1"))
        elem = typname[1:] if typname.startswith("_") else ""
        row = (
            field.name,
            False,
            typmod,
            typname,
            "b",
            "A" if elem else "",
            "",
            elem,
            "",
            "",
            typname,
        )
        columns.append(column_from_row(row))
    return columns
