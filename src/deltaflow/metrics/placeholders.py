"""``{currently}`` and ``{partition_info}`` in metric SQL.

``{currently}`` is the run date. ``{partition_info}`` is the latest partition date of the
table the condition it sits in filters: the SQL is parsed (sqlglot, BigQuery dialect)
with a marker in the placeholder's place, and the table is the one in the FROM of the
SELECT that holds the marker. Written bare, a placeholder becomes a DATE literal;
inside quotes (``'{currently}'``), the date's text.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from deltaflow.errors import PartitionValidationError

MARKER = "__deltaflow_partition_info_"
#: a placeholder, quoted ('{currently}': group 1) or bare ({currently}: group 2)
_PLACEHOLDER = re.compile(r"'\{(currently|partition_info)\}'|\{(currently|partition_info)\}")


def _replace(sql: str, value: Callable[[str, int, bool], str]) -> str:
    """Each placeholder, left to right, replaced by ``value(name, n, quoted)``: n counts
    the {partition_info} placeholders; a quoted one's value goes inside its quotes."""
    seen = 0

    def one(match: re.Match[str]) -> str:
        nonlocal seen
        name = match.group(1) or match.group(2)
        n = seen
        if name == "partition_info":
            seen += 1
        quoted = bool(match.group(1))
        text = value(name, n, quoted)
        return f"'{text}'" if quoted else text

    return _PLACEHOLDER.sub(one, sql)


def fill_for_parsing(sql: str) -> str:
    """The SQL with every placeholder replaced by a date (for validation)."""
    day = dt.date(2000, 1, 1)
    return fill(sql, day, [day] * sql.count("{partition_info}"))


def partition_tables(sql: str, dialect: str = "bigquery") -> list[str]:
    """The table each ``{partition_info}`` filters, in order of appearance."""
    import sqlglot
    from sqlglot import exp

    def marker(name: str, n: int, quoted: bool) -> str:
        text = f"{MARKER}{n}" if name == "partition_info" else "2000-01-01"
        return text if quoted else f"'{text}'"  # a string literal either way

    marked = _replace(sql, marker)
    tree = sqlglot.parse_one(marked, read=dialect)
    found: dict[int, str] = {}
    for literal in tree.find_all(exp.Literal):
        text = str(literal.this) if literal.is_string else ""
        if not text.startswith(MARKER):
            continue
        select = literal.find_ancestor(exp.Select)
        source = (
            (select.args.get("from_") or select.args.get("from")) if select is not None else None
        )
        table = source.find(exp.Table) if source is not None else None
        if table is None:
            raise PartitionValidationError(
                "{partition_info} is not inside a SELECT that reads a table",
                hint="use {partition_info} in the WHERE clause of the query reading the table",
            )
        found[int(text[len(MARKER) :])] = ".".join(
            p for p in (table.catalog, table.db, table.name) if p
        )
    return [found[n] for n in sorted(found)]


def fill(sql: str, run_date: dt.date, partition_dates: list[dt.date]) -> str:
    """The SQL with the run date and, in order, the partition dates filled in: a DATE
    literal where the placeholder is bare, the date's text where it is quoted."""

    def value(name: str, n: int, quoted: bool) -> str:
        day = (run_date if name == "currently" else partition_dates[n]).isoformat()
        return day if quoted else f"DATE '{day}'"

    return _replace(sql, value)
