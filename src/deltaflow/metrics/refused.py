"""The BigQuery functions DuckDB or PostgreSQL would answer differently, and no rewrite
makes them agree: refused, with what to use instead.

Each row of ``REFUSED`` names the function as BigQuery writes it, the engines that
refuse it, why (the different answer) and what to write instead; ``matches`` finds it
in sqlglot's tree of the BigQuery SQL. ``deltaflow.metrics.dialect`` checks a metric's
SQL against this table before it transpiles it; ``metrics validate`` reports every row
a metric's SQL hits, on every engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

#: engines' names as messages write them
ENGINE_NAMES = {"duckdb": "DuckDB", "postgres": "PostgreSQL", "bigquery": "BigQuery"}
BOTH = ("duckdb", "postgres")
PG = ("postgres",)
DUCKDB = ("duckdb",)


@dataclass(frozen=True)
class Refusal:
    """A BigQuery function an engine cannot answer as BigQuery does."""

    function: str
    engines: tuple[str, ...]
    why: str
    instead: str
    matches: Callable[[exp.Expr], bool]

    def message(self, engine: str) -> str:
        name = ENGINE_NAMES.get(engine, engine)
        return f"{self.function} is refused on {name}: {self.why}; instead, {self.instead}"


def _is(*kinds: type[exp.Expr]) -> Callable[[exp.Expr], bool]:
    return lambda node: isinstance(node, kinds)


def _unit(node: exp.Expr) -> str:
    unit = node.args.get("unit")
    if isinstance(unit, exp.WeekStart):
        return "WEEK"
    return unit.name.upper() if unit is not None else ""


def _window_of(kind: type[exp.Expr]) -> Callable[[exp.Expr], bool]:
    return lambda node: isinstance(node, exp.Window) and isinstance(node.this, kind)


#: the format elements (strftime's, as sqlglot writes BigQuery's) each engine formats
#: and parses as BigQuery does; other elements (%Q, %u, %U, %e ...) are refused
FORMAT_ELEMENTS = {
    "duckdb": set("YmdbBAajFyHMSuwUe%"),
    "postgres": set("YmdbBAjFyMS%"),
}
_ELEMENT = re.compile(r"%[-_0^#]?[EO]?(.)")


def _format_differs(engine: str) -> Callable[[exp.Expr], bool]:
    def differs(node: exp.Expr) -> bool:
        if not isinstance(node, exp.TimeToStr | exp.StrToDate | exp.StrToTime):
            return False
        fmt = node.args.get("format")
        if not isinstance(fmt, exp.Literal) or not fmt.is_string:
            return True
        return any(e not in FORMAT_ELEMENTS[engine] for e in _ELEMENT.findall(fmt.this))

    return differs


def _offset_subscript(node: exp.Expr) -> bool:
    return (
        isinstance(node, exp.Bracket)
        and node.args.get("offset") is not None
        and not (node.args.get("safe"))
    )


REFUSED: list[Refusal] = [
    # dates and times
    Refusal(
        "FORMAT_DATE/FORMAT_TIMESTAMP/PARSE_DATE with this format element",
        ("duckdb",),
        "DuckDB's strftime has no %Q (quarter) and formats a few BigQuery elements differently",
        "use %Y, %m, %d, %b, %B, %A, %a, %j, %F, %H, %M, %S, %u, %w, %U, %e, %c, %x or "
        "EXTRACT(QUARTER FROM ...)",
        _format_differs("duckdb"),
    ),
    Refusal(
        "FORMAT_DATE/FORMAT_TIMESTAMP/PARSE_DATE with this format element",
        PG,
        "PostgreSQL's to_char/to_date give %u, %w, %U, %e, %H, %Q and %c other text "
        "(or none), and a format that is not a literal cannot be checked",
        "use a literal format of %Y, %m, %d, %b, %B, %A, %j, %F, %y, %M, %S only, or "
        "EXTRACT(...) for numbered parts",
        _format_differs("postgres"),
    ),
    Refusal(
        "PARSE_DATETIME",
        PG,
        "PostgreSQL has no such function",
        "use CAST(text AS DATETIME) for ISO text, or PARSE_DATE",
        lambda n: (
            isinstance(n, exp.ParseDatetime)
            or (isinstance(n, exp.Anonymous) and n.name.upper() == "PARSE_DATETIME")
        ),
    ),
    Refusal(
        "DATE(timestamp, time_zone)",
        PG,
        "PostgreSQL's DATE takes no time zone",
        "use DATE(TIMESTAMP(DATETIME(ts, zone))) on BigQuery, or convert the zone upstream",
        lambda n: isinstance(n, exp.Date) and n.args.get("zone") is not None,
    ),
    Refusal(
        "LAST_DAY with a part other than MONTH or WEEK",
        PG,
        "PostgreSQL's translation always gives the month's last day",
        "use DATE_SUB(DATE_ADD(DATE_TRUNC(d, YEAR), INTERVAL 1 YEAR), INTERVAL 1 DAY)",
        lambda n: isinstance(n, exp.LastDay) and _unit(n) not in ("", "MONTH", "WEEK", "ISOWEEK"),
    ),
    Refusal(
        "TIMESTAMP_DIFF with a part other than SECOND, MINUTE, HOUR or DAY",
        BOTH,
        "BigQuery counts whole intervals and the engine counts part boundaries",
        "use TIMESTAMP_DIFF(a, b, SECOND) and divide, or DATE_DIFF on dates",
        lambda n: (
            isinstance(n, exp.TimestampDiff) and _unit(n) not in ("SECOND", "MINUTE", "HOUR", "DAY")
        ),
    ),
    Refusal(
        "DATETIME_DIFF",
        PG,
        "the PostgreSQL translation does not run",
        "use DATE_DIFF(DATE(a), DATE(b), part) for day parts, or TIMESTAMP_DIFF",
        _is(exp.DatetimeDiff),
    ),
    Refusal(
        "DATETIME_TRUNC with WEEK, ISOWEEK or ISOYEAR",
        PG,
        "PostgreSQL's weeks start on Monday only",
        "use DATE_TRUNC(DATE(dt), WEEK)",
        lambda n: isinstance(n, exp.DatetimeTrunc) and _unit(n) in ("WEEK", "ISOWEEK", "ISOYEAR"),
    ),
    # strings
    Refusal(
        "FORMAT",
        PG,
        "PostgreSQL's FORMAT knows only %s, %I and %L and formats numbers differently",
        "use CAST(x AS STRING), LPAD and CONCAT",
        _is(exp.Format),
    ),
    Refusal(
        "INSTR with a position or an occurrence",
        BOTH,
        "the engine's translation ignores both and finds the first occurrence",
        "use STRPOS on a SUBSTR",
        lambda n: (
            isinstance(n, exp.StrPosition)
            and (n.args.get("position") is not None or n.args.get("occurrence") is not None)
        ),
    ),
    Refusal("SOUNDEX", BOTH, "the engine has no SOUNDEX", "compute it upstream", _is(exp.Soundex)),
    Refusal(
        "REGEXP_CONTAINS/REGEXP_EXTRACT/REGEXP_EXTRACT_ALL/REGEXP_REPLACE",
        PG,
        "PostgreSQL's regular expressions are not RE2 (a '-' in a class, \\d, lazy "
        "quantifiers and replacements differ)",
        "use LIKE, STRPOS, SUBSTR or SPLIT",
        _is(exp.RegexpLike, exp.RegexpExtract, exp.RegexpExtractAll, exp.RegexpReplace),
    ),
    # casts, SAFE_ and SAFE.
    Refusal(
        "SAFE_CAST",
        PG,
        "PostgreSQL has no safe cast: it raises where BigQuery gives NULL",
        "CAST values known to be valid (filter them with WHERE, or clean the column upstream)",
        _is(exp.TryCast),
    ),
    Refusal(
        "SAFE_ADD/SAFE_SUBTRACT/SAFE_MULTIPLY/SAFE_NEGATE",
        PG,
        "PostgreSQL raises on overflow where BigQuery gives NULL",
        "use plain + - * (an overflow then fails the metric) or SAFE_DIVIDE",
        _is(exp.SafeAdd, exp.SafeSubtract, exp.SafeMultiply, exp.SafeNegate),
    ),
    Refusal(
        "SAFE. prefix",
        BOTH,
        "the engine's functions return values, not errors, for some inputs BigQuery "
        "rejects, so NULL cannot be given for exactly those",
        "call the function without SAFE. and check its arguments with IF",
        _is(exp.SafeFunc),
    ),
    # math
    Refusal(
        "ROUND with a rounding mode",
        PG,
        "PostgreSQL's ROUND has no rounding mode",
        "use ROUND(x, n) (half away from zero)",
        lambda n: isinstance(n, exp.Round) and n.args.get("truncate") is not None,
    ),
    Refusal(
        "RANGE_BUCKET",
        BOTH,
        "the engine has no RANGE_BUCKET",
        "use CASE WHEN",
        _is(exp.RangeBucket),
    ),
    Refusal(
        "IEEE_DIVIDE",
        PG,
        "PostgreSQL raises on division by zero where BigQuery gives Infinity or NaN",
        "use SAFE_DIVIDE (NULL on zero)",
        lambda n: isinstance(n, exp.Anonymous) and n.name.upper() == "IEEE_DIVIDE",
    ),
    # aggregates and windows
    Refusal(
        "APPROX_QUANTILES",
        BOTH,
        "the engine's quantiles interpolate or pick other ranks than BigQuery's",
        "use PERCENTILE_CONT(x, q) OVER () on DuckDB, or compute quantiles upstream",
        _is(exp.ApproxQuantiles),
    ),
    Refusal(
        "APPROX_TOP_COUNT/APPROX_TOP_SUM",
        BOTH,
        "the engine returns no ARRAY<STRUCT<value, count>>",
        "use COUNT(*) ... GROUP BY value ORDER BY 2 DESC LIMIT n",
        _is(exp.ApproxTopK, exp.ApproxTopSum),
    ),
    Refusal(
        "PERCENTILE_CONT/PERCENTILE_DISC",
        PG,
        "PostgreSQL's are ordered-set aggregates, not window functions",
        "run the metric on DuckDB or BigQuery, or compute the percentile upstream",
        lambda n: _window_of(exp.PercentileCont)(n) or _window_of(exp.PercentileDisc)(n),
    ),
    # arrays
    Refusal(
        "OFFSET/ORDINAL subscripts",
        BOTH,
        "the engine gives NULL past the array's end where BigQuery raises an error",
        "use SAFE_OFFSET or SAFE_ORDINAL (NULL past the end, on every engine)",
        _offset_subscript,
    ),
    Refusal(
        "UNNEST ... WITH OFFSET",
        BOTH,
        "the engine's WITH ORDINALITY counts from 1, BigQuery's offset from 0",
        "subtract 1 from a position you number with ROW_NUMBER(), or avoid the offset",
        lambda n: isinstance(n, exp.Unnest) and isinstance(n.args.get("offset"), exp.Expr),
    ),
    Refusal(
        "ARRAY_REVERSE",
        PG,
        "PostgreSQL has no ARRAY_REVERSE",
        "reverse upstream",
        _is(exp.ArrayReverse),
    ),
    Refusal(
        "ARRAY_FIRST/ARRAY_LAST",
        BOTH,
        "the engine has no such function",
        "use arr[SAFE_OFFSET(0)]",
        _is(exp.ArrayFirst, exp.ArrayLast),
    ),
    # JSON
    Refusal(
        "JSON_VALUE/JSON_EXTRACT_SCALAR",
        PG,
        "PostgreSQL gives an object's or an array's text where BigQuery gives NULL",
        "read JSON columns into typed columns upstream",
        _is(exp.JSONExtractScalar),
    ),
    Refusal(
        "JSON_QUERY/JSON_EXTRACT",
        PG,
        "PostgreSQL writes JSON text with other spacing than BigQuery",
        "use JSON_VALUE on DuckDB, or typed columns",
        _is(exp.JSONExtract),
    ),
    Refusal(
        "JSON_EXTRACT_ARRAY/JSON_VALUE_ARRAY/TO_JSON_STRING",
        PG,
        "PostgreSQL has no such function",
        "read JSON columns into typed columns upstream",
        _is(exp.JSONExtractArray, exp.JSONValueArray, exp.JSONFormat),
    ),
]


def found(tree: exp.Expr, engine: str) -> list[Refusal]:
    """The rows of ``REFUSED`` the SQL hits on ``engine``, each once."""
    rules = [r for r in REFUSED if engine in r.engines]
    nodes = list(tree.walk())
    return [r for r in rules if any(r.matches(node) for node in nodes)]
