"""The SELECT that reads a stream, written once for the SQL engines.

A stream is a table or a custom query. Its statement selects the engine's column list
from the quoted table, or from the query nested as a subquery, and filters it with
``where`` and the incremental window pushed down as a predicate on the cursor column.
A query that places ``{start_timestamp}``/``{end_timestamp}`` itself filters itself:
those become parameters ($1, $2) and no predicate is added.

The engine gives its facts as data (``SelectFacts``) and its own select list and extra
conditions (PostgreSQL's ctid range of a split).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.protocol import (
    CursorWindow,
    bind_placeholders,
    has_placeholders,
    split_table,
)
from deltaflow.errors import SourceError
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    from deltaflow.config.sources import SqlSource
    from deltaflow.schema.types import LogicalType


@dataclass(frozen=True)
class SelectFacts:
    """How an engine writes the SELECT of a stream."""

    default_schema: str
    """The schema a bare table name lives in ('main', 'public')."""
    quote: Callable[[str], str] = quote_double
    """Quotes one identifier."""
    where_on_query: bool = True
    """Whether ``where`` filters a query's rows too; False: a query is read as written."""

    def table(self, name: str) -> str:
        """``schema.table`` with each part quoted, so that no name can inject SQL."""
        schema, table = split_table(name, self.default_schema)
        return f"{self.quote(schema)}.{self.quote(table)}"


def bind_query(query: str, window: CursorWindow | None, stream: str) -> tuple[str, list[Any]]:
    """The custom query with ``{start_timestamp}``/``{end_timestamp}`` as parameters
    ($1, $2) and their values from ``window``; a query without them as it is."""
    if not has_placeholders(query):
        return query, []
    if window is None:
        raise SourceError(
            f"the query of stream '{stream}' uses {{start_timestamp}}/{{end_timestamp}}, "
            "which only an incremental step fills in",
            hint="add 'incremental: {cursor: <column>}' to the step",
        )
    return bind_placeholders(query, window.placeholder_values())


def window_predicate(
    window: CursorWindow | None,
    query: str | None,
    types: Mapping[str, LogicalType],
    quote: Callable[[str], str] = quote_double,
) -> str | None:
    """The window as a predicate on the cursor column (``types``: the stream's columns).

    None without a window, for a query that places the window itself, or when the cursor
    is not among the columns (the sync reports that)."""
    if window is None or has_placeholders(query):
        return None
    cursor = types.get(window.cursor)
    if cursor is None:
        return None
    return window.predicate(quote(window.cursor), cursor.kind, cursor.tz)


def nested(query: str) -> str:
    """A query as the subquery ``q``: without its trailing semicolons, and on lines of its
    own, so that a query ending in a -- comment does not comment out the ')'."""
    query = query.strip()
    while query.endswith(";"):
        query = query[:-1].rstrip()
    return f"(\n{query}\n) AS q"


def stream_select(
    spec: SqlSource,
    columns: str,
    facts: SelectFacts,
    *,
    window: str | None = None,
    query: str | None = None,
    table_conditions: Sequence[str] = (),
) -> str:
    """``SELECT <columns> FROM <table, or (query) AS q> WHERE ...`` for the stream.

    ``query``: the custom query with its placeholders bound (see ``bind_query``);
    ``window``: from ``window_predicate``; ``table_conditions``: the engine's own, on a
    table read only."""
    conditions = []
    if spec.where and (not spec.query or facts.where_on_query):
        conditions.append(f"({spec.where})")
    if window:
        conditions.append(window)
    if spec.query:
        source = nested(query if query is not None else spec.query)
    else:
        source = facts.table(spec.table_name)
        conditions += table_conditions
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT {columns} FROM {source}{where}"
