"""BigQuery metric SQL on DuckDB and PostgreSQL: BigQuery's answers, or a refusal.

sqlglot transpiles BigQuery SQL for the warehouse, but some functions then give other
answers there: ``EXTRACT(DAYOFWEEK ...)`` counts from Monday on DuckDB, ``SUBSTR(s,
-2)`` is the whole string on PostgreSQL, ``GREATEST(1, NULL)`` is 1 ... ``transpile``
rewrites each such function into SQL that gives BigQuery's result there (``rewrites``:
per engine, functions from a node of the BigQuery tree to its replacement), and refuses
the ones no rewrite makes agree (``deltaflow.metrics.refused.REFUSED``), naming the
function, the engine and what to use instead. The fidelity suite
(tests/integration/test_metric_fidelity.py) holds both tables to BigQuery's documented
results.

Rewrites run bottom-up over the parsed BigQuery tree, so a rewrite sees its arguments
already rewritten and never sees its own output. A template is SQL in the target
dialect whose columns ``_a``, ``_b`` ... stand for the node's arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import TYPE_CHECKING

from deltaflow.errors import Code, MetricError

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["ENGINES", "RefusedFunctionError", "refusals", "rewrites", "transpile"]

#: the engines metric SQL written for BigQuery is transpiled for
ENGINES = ("duckdb", "postgres")

Rewrite = Callable[["exp.Expr"], "exp.Expr"]

#: weekday numbers as EXTRACT(DOW ...) gives them on both engines
WEEKDAYS = ("SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY")
#: seconds in the parts TIMESTAMP_DIFF counts as whole intervals
SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}


class RefusedFunctionError(MetricError):
    """Metric SQL uses a function the engine would answer differently from BigQuery."""

    code = Code.SQL_EXECUTION_ERROR


def refusals(tree: exp.Expr, engine: str, read: str = "bigquery") -> list[str]:
    """The message of every refused function the SQL uses on ``engine``."""
    if read != "bigquery" or engine == read:
        return []
    from deltaflow.metrics.refused import found

    return [rule.message(engine) for rule in found(tree, engine)]


def transpile(sql: str, engine: str, read: str = "bigquery") -> str:
    """The SQL in ``engine``'s dialect, giving BigQuery's answers; raises
    ``RefusedFunctionError`` when it uses a function refused on that engine."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read=read)
    refused = refusals(tree, engine, read)
    if refused:
        raise RefusedFunctionError(
            refused[0], hint="see 'Metrics' in the README for what each engine refuses"
        )
    if read == "bigquery" and engine != read:
        for node in reversed(list(tree.walk())):  # children before their parents
            for rewrite in rewrites(engine):
                new = rewrite(node)
                if new is not node:
                    node.replace(new)
                    break
    for n, subquery in enumerate(tree.find_all(exp.Subquery)):
        if not subquery.alias and isinstance(subquery.parent, exp.From | exp.Join):
            # PostgreSQL before 16 requires an alias, BigQuery does not
            subquery.set("alias", exp.TableAlias(this=exp.to_identifier(f"_q{n}")))
    return str(tree.sql(dialect=engine))


def _template(sql: str, engine: str, *args: exp.Expr) -> exp.Expr:
    """``sql`` (the engine's dialect) with ``_a``, ``_b`` ... replaced by ``args``."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read=engine)
    names = {f"_{chr(ord('a') + i)}": arg for i, arg in enumerate(args)}
    for column in list(tree.find_all(exp.Column)):
        if column.name in names and not column.table:
            column.replace(names[column.name].copy())
    return tree


def _part(node: exp.Expr, key: str = "unit") -> tuple[str, int]:
    """A date part (DAY, WEEK ...) and, for weeks, the weekday they start on."""
    from sqlglot import exp

    unit = node.args.get(key)
    if isinstance(unit, exp.WeekStart):
        return "WEEK", WEEKDAYS.index(unit.name.upper())
    name = unit.name.upper() if unit is not None else ""
    if name == "ISOWEEK":
        return "WEEK", 1
    return name, 0


def _week_start(day: exp.Expr, weekday: int, engine: str) -> exp.Expr:
    """The first day of the week (starting on ``weekday``) holding ``day``."""
    return _template(
        f"CAST(CAST(_a AS DATE) - CAST((CAST(EXTRACT(DOW FROM _a) AS INT) - {weekday} + 7) "
        "% 7 AS INT) AS DATE)",
        engine,
        day,
    )


def _extract(engine: str, node: exp.Expr) -> exp.Expr:
    """EXTRACT's parts as BigQuery numbers them (DAYOFWEEK 1 = Sunday, Sunday-based
    WEEK, ISOWEEK, seconds without their fraction ...)."""
    from sqlglot import exp

    if not isinstance(node, exp.Extract):
        return node
    day = node.expression
    part = node.this
    if isinstance(part, exp.WeekStart):
        name, weekday = "WEEK", WEEKDAYS.index(part.name.upper())
    else:
        name, weekday = part.name.upper(), 0
    templates = {
        "DAYOFWEEK": "CAST(EXTRACT(DOW FROM _a) + 1 AS BIGINT)",
        "DAYOFYEAR": "CAST(EXTRACT(DOY FROM _a) AS BIGINT)",
        "WEEK": f"CAST(FLOOR((EXTRACT(DOY FROM _a) + 6 - (CAST(EXTRACT(DOW FROM _a) AS INT) "
        f"- {weekday} + 7) % 7) / 7) AS BIGINT)",
        "ISOWEEK": "CAST(EXTRACT(WEEK FROM _a) AS BIGINT)",
        "SECOND": "CAST(FLOOR(EXTRACT(SECOND FROM _a)) AS BIGINT)",
        "MILLISECOND": "CAST(FLOOR(EXTRACT(MILLISECOND FROM _a)) AS BIGINT) % 1000",
        "MICROSECOND": "CAST(FLOOR(EXTRACT(MICROSECOND FROM _a)) AS BIGINT) % 1000000",
        "DATE": "CAST(_a AS DATE)",
    }
    if name not in templates:
        return node
    return _template(templates[name], engine, day)


def _dates(engine: str, node: exp.Expr) -> exp.Expr:
    """DATE_ADD, DATE_SUB, DATE_TRUNC and DATE_FROM_UNIX_DATE give a DATE (sqlglot's
    translation gives a timestamp); weeks start on the part's weekday."""
    from sqlglot import exp

    if isinstance(node, exp.DateTrunc):
        part, weekday = _part(node)
        day = node.this
        if part == "WEEK":
            return _week_start(day, weekday, engine)
        if part == "ISOYEAR":  # the Monday of the ISO year's first week
            return _template(
                "CAST(CAST(_a AS DATE) - CAST((EXTRACT(WEEK FROM _a) - 1) * 7 + "
                "EXTRACT(ISODOW FROM _a) - 1 AS INT) AS DATE)",
                engine,
                day,
            )
        return exp.cast(node, exp.DataType.build("DATE"))
    if isinstance(node, exp.DateAdd | exp.DateSub | exp.DateFromUnixDate):
        return exp.cast(node, exp.DataType.build("DATE"))
    return node


def _date_diff(engine: str, node: exp.Expr) -> exp.Expr:
    """DATE_DIFF in weeks (Sunday or the part's weekday) and ISO years, counting part
    boundaries as BigQuery does."""
    from sqlglot import exp

    if not isinstance(node, exp.DateDiff):
        return node
    part, weekday = _part(node)
    if part == "WEEK":
        later = _week_start(node.this, weekday, engine)
        earlier = _week_start(node.expression, weekday, engine)
        return _template("CAST((_a - _b) / 7 AS BIGINT)", engine, later, earlier)
    if part == "ISOYEAR":
        return _template(
            "CAST(EXTRACT(ISOYEAR FROM _a) - EXTRACT(ISOYEAR FROM _b) AS BIGINT)",
            engine,
            node.this,
            node.expression,
        )
    return node


def _timestamp_diff(engine: str, node: exp.Expr) -> exp.Expr:
    """TIMESTAMP_DIFF counts whole intervals (rounded toward zero), not boundaries."""
    from sqlglot import exp

    if not isinstance(node, exp.TimestampDiff):
        return node
    seconds = SECONDS.get(_part(node)[0])
    if seconds is None:
        return node  # refused
    return _template(
        f"CAST(TRUNC((EXTRACT(EPOCH FROM _a) - EXTRACT(EPOCH FROM _b)) / {seconds}) AS BIGINT)",
        engine,
        node.this,
        node.expression,
    )


def _substr(engine: str, node: exp.Expr) -> exp.Expr:
    """SUBSTR: a negative position counts from the end, 0 (or before the start) is 1."""
    from sqlglot import exp

    if not isinstance(node, exp.Substring):
        return node
    start = node.args.get("start")
    if start is None or (
        isinstance(start, exp.Literal) and not start.is_string and int(start.this) > 0
    ):
        return node
    position = _template(
        "CASE WHEN _b < 0 THEN CASE WHEN LENGTH(_a) + _b + 1 < 1 THEN 1 "
        "ELSE LENGTH(_a) + _b + 1 END WHEN _b = 0 THEN 1 ELSE _b END",
        engine,
        node.this,
        start,
    )
    new = node.copy()
    new.set("start", position)
    return new


def _greatest(engine: str, node: exp.Expr) -> exp.Expr:
    """GREATEST and LEAST are NULL when an argument is NULL."""
    from sqlglot import exp

    if not isinstance(node, exp.Greatest | exp.Least):
        return node
    args = [node.this, *node.expressions]
    test = exp.or_(*(exp.Is(this=a.copy(), expression=exp.Null()) for a in args))
    return exp.Case(ifs=[exp.If(this=test, true=exp.Null())], default=node.copy())


def _int_literals(engine: str, node: exp.Expr) -> exp.Expr:
    """Integer literals in arithmetic are INT64, as in BigQuery (not 32-bit)."""
    from sqlglot import exp

    arithmetic = (exp.Add, exp.Sub, exp.Mul, exp.SafeAdd, exp.SafeSubtract, exp.SafeMultiply)
    if not (isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit()):
        return node
    operand: exp.Expr = node
    while isinstance(operand.parent, exp.Neg | exp.SafeNegate | exp.Paren):
        operand = operand.parent
    if isinstance(operand.parent, arithmetic) or isinstance(operand, exp.SafeNegate):
        return exp.cast(node.copy(), exp.DataType.build("BIGINT"))
    return node


def _float_to_int(engine: str, node: exp.Expr) -> exp.Expr:
    """CAST(x AS INT64) of a FLOAT64 or NUMERIC rounds half away from zero. Only where
    the SQL shows x's type: a column's type is the warehouse's (see the README)."""
    from sqlglot import exp
    from sqlglot.optimizer.annotate_types import annotate_types

    if not (isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.BIGINT):
        return node
    value = node.this
    known = annotate_types(value.copy(), dialect="bigquery").type
    if known is None or not known.is_type("double", "float", "decimal", "bigdecimal"):
        return node
    template = "ROUND(_a)" if engine == "duckdb" else "ROUND(CAST(_a AS NUMERIC))"
    new = node.copy()
    new.set("this", _template(template, engine, value))
    return new


def _division(engine: str, node: exp.Expr) -> exp.Expr:
    """Division and MOD by zero raise, as in BigQuery (DuckDB gives Infinity or NULL)."""
    from sqlglot import exp

    if not isinstance(node, exp.Div | exp.IntDiv | exp.Mod) or node.args.get("safe"):
        return node
    divisor = node.expression
    if isinstance(divisor, exp.Literal) and not divisor.is_string and float(divisor.this) != 0:
        return node
    return _template(
        "CASE WHEN _a = 0 THEN ERROR('division by zero') ELSE _b END",
        engine,
        node.expression,
        node,
    )


def _named(
    engine: str, kinds: tuple[type[exp.Expr], ...], template: str, node: exp.Expr
) -> exp.Expr:
    """A function replaced by a template of its arguments (in order)."""
    if not isinstance(node, kinds):
        return node
    args = [a for a in node.args.values() if a is not None and not isinstance(a, bool | list)]
    args += [e for a in node.args.values() if isinstance(a, list) for e in a]
    return _template(template, engine, *args)


def _both(engine: str) -> list[Rewrite]:
    from sqlglot import exp

    named = partial(_named, engine)
    found: list[Rewrite] = [
        partial(_int_literals, engine),
        partial(_extract, engine),
        partial(_dates, engine),
        partial(_timestamp_diff, engine),
        partial(_substr, engine),
        partial(_float_to_int, engine),
    ]
    if engine == "duckdb":
        found += [
            partial(_division, engine),
            partial(named, (exp.ByteLength,), "STRLEN(_a)"),
            _printf,
            partial(named, (exp.SafeAdd,), "TRY(_a + _b)"),
            partial(named, (exp.SafeSubtract,), "TRY(_a - _b)"),
            partial(named, (exp.SafeMultiply,), "TRY(_a * _b)"),
            partial(named, (exp.SafeNegate,), "TRY(-_a)"),
            _ieee_divide,
            _duckdb_utc,
        ]
    return found


def _printf(node: exp.Expr) -> exp.Expr:
    """FORMAT is DuckDB's PRINTF (DuckDB's FORMAT takes {} placeholders)."""
    from sqlglot import exp

    if isinstance(node, exp.Format):
        return exp.Anonymous(this="PRINTF", expressions=[node.this.copy(), *node.expressions])
    return node


def _duckdb_utc(node: exp.Expr) -> exp.Expr:
    """TIMESTAMP_MILLIS/MICROS and PARSE_TIMESTAMP give a UTC TIMESTAMP (DuckDB's
    translation gives a TIMESTAMP without a zone)."""
    from sqlglot import exp

    scale = node.args.get("scale")
    naive = isinstance(node, exp.UnixToTime) and scale is not None and scale.name in ("3", "6")
    if naive or isinstance(node, exp.StrToTime):
        return exp.AtTimeZone(this=node.copy(), zone=exp.Literal.string("UTC"))
    return node


def _ieee_divide(node: exp.Expr) -> exp.Expr:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous) and node.name.upper() == "IEEE_DIVIDE":
        return _template("CAST(_a AS DOUBLE) / _b", "duckdb", *node.expressions)
    return node


def _postgres() -> list[Rewrite]:
    from sqlglot import exp

    named = partial(_named, "postgres")
    return [
        *_both("postgres"),
        partial(_date_diff, "postgres"),
        partial(_greatest, "postgres"),
        partial(named, (exp.ByteLength,), "OCTET_LENGTH(_a)"),
        partial(named, (exp.EndsWith,), "RIGHT(_a, LENGTH(_b)) = _b"),
        partial(named, (exp.Contains,), "STRPOS(_a, _b) > 0"),
        partial(named, (exp.IsNan,), "_a = CAST('NaN' AS DOUBLE PRECISION)"),
        partial(named, (exp.IsInf,), "ABS(_a) = CAST('Infinity' AS DOUBLE PRECISION)"),
        partial(named, (exp.AnyValue,), "MIN(_a)"),
        partial(named, (exp.ApproxDistinct,), "COUNT(DISTINCT _a)"),
        partial(named, (exp.ArraySize,), "CARDINALITY(_a)"),
        partial(named, (exp.DateFromParts,), "MAKE_DATE(_a, _b, _c)"),
        partial(named, (exp.UnixSeconds,), "CAST(FLOOR(EXTRACT(EPOCH FROM _a)) AS BIGINT)"),
        partial(named, (exp.UnixMillis,), "CAST(FLOOR(EXTRACT(EPOCH FROM _a) * 1000) AS BIGINT)"),
        partial(
            named, (exp.UnixMicros,), "CAST(FLOOR(EXTRACT(EPOCH FROM _a) * 1000000) AS BIGINT)"
        ),
        _pg_round,
        _pg_split,
        _pg_generate_array,
        _pg_datetime_trunc,
        _pg_last_day,
        _pg_subscript,
    ]


def _pg_round(node: exp.Expr) -> exp.Expr:
    """ROUND of a FLOAT64 rounds half away from zero (PostgreSQL's, half to even)."""
    from sqlglot import exp

    if not isinstance(node, exp.Round) or node.args.get("truncate") is not None:
        return node
    new = node.copy()
    new.set("this", _template("CAST(_a AS NUMERIC)", "postgres", node.this))
    return new


def _pg_split(node: exp.Expr) -> exp.Expr:
    """SPLIT of '' is [''] and the delimiter defaults to ','."""
    from sqlglot import exp

    if not isinstance(node, exp.Split):
        return node
    delimiter = node.expression or exp.Literal.string(",")
    return _template(
        "CASE WHEN _a = '' THEN ARRAY[''] ELSE STRING_TO_ARRAY(_a, _b) END",
        "postgres",
        node.this,
        delimiter,
    )


def _pg_generate_array(node: exp.Expr) -> exp.Expr:
    """GENERATE_ARRAY and GENERATE_DATE_ARRAY give one array, not rows."""
    from sqlglot import exp

    if isinstance(node, exp.GenerateSeries) and not node.args.get("is_end_exclusive"):
        step = node.args.get("step") or exp.Literal.number(1)
        return _template(
            "ARRAY(SELECT GENERATE_SERIES(_a, _b, _c))",
            "postgres",
            node.args["start"],
            node.args["end"],
            step,
        )
    if isinstance(node, exp.GenerateDateArray):
        return _template(
            "ARRAY(SELECT CAST(GENERATE_SERIES(CAST(_a AS DATE), CAST(_b AS DATE), _c) AS DATE))",
            "postgres",
            node.args["start"],
            node.args["end"],
            node.args["step"],
        )
    return node


def _pg_datetime_trunc(node: exp.Expr) -> exp.Expr:
    from sqlglot import exp

    if not isinstance(node, exp.DatetimeTrunc):
        return node
    part = _part(node)[0].lower()
    return _template(f"DATE_TRUNC('{part}', _a)", "postgres", node.this)


def _pg_last_day(node: exp.Expr) -> exp.Expr:
    """LAST_DAY of a week: the week's first day plus six."""
    from sqlglot import exp

    if not isinstance(node, exp.LastDay):
        return node
    part, weekday = _part(node)
    if part != "WEEK":
        return node
    start = _week_start(node.this, weekday, "postgres")
    return _template("CAST(_a + 6 AS DATE)", "postgres", start)


def _pg_subscript(node: exp.Expr) -> exp.Expr:
    """An array from a function call is subscripted in parentheses in PostgreSQL."""
    from sqlglot import exp

    if isinstance(node, exp.Bracket) and not isinstance(node.this, exp.Paren | exp.Array):
        new = node.copy()
        new.set("this", exp.Paren(this=node.this.copy()))
        return new
    return node


@cache
def rewrites(engine: str) -> tuple[Rewrite, ...]:
    """The rewrites that make sqlglot's translation for ``engine`` give BigQuery's
    answers (none for an engine that needs none)."""
    builders = {"duckdb": lambda: _both("duckdb"), "postgres": _postgres}
    return tuple(builders[engine]()) if engine in builders else ()
