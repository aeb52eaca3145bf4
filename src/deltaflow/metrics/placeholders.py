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

from deltaflow.errors import DeltaFlowError

MARKER = "__deltaflow_partition_info_"
#: a placeholder, quoted ('{currently}': group 1) or bare ({currently}: group 2)
_PLACEHOLDER = re.compile(r"'\{(currently|partition_info)\}'|\{(currently|partition_info)\}")


class PartitionValidationError(DeltaFlowError):
    code = "PARTITION_VALIDATION_ERROR"
    category = "data"


def _replace(sql: str, value: Callable[[str, int], str]) -> str:
    """Each placeholder, left to right, replaced by ``value(name, n)``: n counts the
    {partition_info} placeholders; quoted ones keep their quotes."""
    seen = 0

    def one(match: re.Match[str]) -> str:
        nonlocal seen
        name = match.group(1) or match.group(2)
        n = seen
        if name == "partition_info":
            seen += 1
        text = value(name, n)
        return f"'{text}'" if match.group(1) else text

    return _PLACEHOLDER.sub(one, sql)


def fill_for_parsing(sql: str) -> str:
    """The SQL with every placeholder replaced by a date (for validation)."""
    day = dt.date(2000, 1, 1)
    return fill(sql, day, [day] * sql.count("{partition_info}"))


def partition_tables(sql: str, dialect: str = "bigquery") -> list[str]:
    """The table each ``{partition_info}`` filters, in order of appearance."""
    import sqlglot
    from sqlglot import exp

    marked = _replace(
        sql, lambda name, n: f"{MARKER}{n}" if name == "partition_info" else "2000-01-01"
    )
    # bare markers must still parse: quote them
    marked = re.sub(rf"(?<!')({MARKER}\d+)(?!')", r"'\1'", marked)
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

    def value(name: str, n: int) -> str:
        return (run_date if name == "currently" else partition_dates[n]).isoformat()

    def bare_as_date(match: re.Match[str]) -> str:
        return match.group(0) if match.group(1) else f"DATE '{match.group(2)}'"

    marked = _replace(sql, lambda name, n: f"{{{{{value(name, n)}}}}}")
    # quoted: '{{2024-01-15}}' -> '2024-01-15'; bare: {{2024-01-15}} -> DATE '2024-01-15'
    marked = re.sub(r"'\{\{([0-9-]+)\}\}'", r"'\1'", marked)
    return re.sub(r"\{\{([0-9-]+)\}\}", r"DATE '\1'", marked)
