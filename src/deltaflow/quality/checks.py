"""Data-quality checks, pushed down to the warehouse as SQL.

Every check is built as a sqlglot expression and rendered in the warehouse's dialect
(DuckDB, PostgreSQL, BigQuery): identifiers are quoted, values are literals, and a
check's ``filter`` is parsed as a condition, so nothing from config is pasted into SQL
text. ``custom_sql`` is the user's own query and runs as written.

Row checks (not_null, unique, between, accepted_values, regex) mean what Great
Expectations' column map expectations mean: NULL passes every check but not_null, so a
check counts the rows (``element_count``), the NULL ones (``missing_count``), the rows
checked (the non-NULL ones; every row for not_null), the failing ones among them
(``failing_rows``, GE's unexpected_count) and their share of the rows checked
(``unexpected_percent``), and keeps a few failing rows as a sample. Table checks
(row_count, freshness, schema, custom_sql) observe one value. A check fails when more
rows fail than ``max_failures`` allows and, with ``mostly`` (or ``max_failure_percent``),
fewer of the rows checked pass than it asks; a failed ``critical`` check stops the
pipeline, a failed ``warning`` is recorded as ``warned``; a check that cannot run (a
missing column, bad SQL) is ``errored``, which stops the pipeline when critical.

The table's quality score (0-100) is the mean of its checks' scores: a row check scores
the share of checked rows that pass, a table check 100 when it passes, an errored check 0.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from deltaflow.config.models import ROW_CHECK_KINDS, CheckSpec, QualityStep, duration_seconds
from deltaflow.connectors.protocol import split_table
from deltaflow.connectors.registry import open_warehouse
from deltaflow.errors import ConfigError, DeltaFlowError, QualityFailedError
from deltaflow.schema.types import TableSchema, parse_type

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

    from deltaflow.config.models import Pipeline
    from deltaflow.connectors.protocol import RunResources, Warehouse

log = logging.getLogger("deltaflow.quality")


@dataclass
class CheckResult:
    name: str
    check: str
    table: str
    severity: str
    status: str  # passed | warned | failed | errored
    observed: Any = None
    rows_checked: int | None = None
    failing_rows: int | None = None
    element_count: int | None = None
    missing_count: int | None = None
    unexpected_percent: float | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    @property
    def score(self) -> float:
        if self.status == "errored":
            return 0.0
        if self.rows_checked:
            return 100.0 * (1 - (self.failing_rows or 0) / self.rows_checked)
        return 100.0 if self.status == "passed" else 0.0


def run_quality(step: QualityStep, pipeline: Pipeline, resources: RunResources) -> dict[str, Any]:
    """Run the step's checks; the step's details (results, score). Raises
    ``QualityFailedError`` when a critical check failed or errored."""
    warehouse = _warehouse(step, pipeline, resources)
    results = [run_check(check, step, warehouse) for check in step.checks]
    score = round(sum(r.score for r in results) / len(results), 1)
    details = {
        "table": step.table,
        "quality_score": score,
        "checks": [asdict(r) for r in results],
    }
    for r in results:
        log.log(
            logging.INFO if r.status == "passed" else logging.WARNING,
            "%s %s: %s%s",
            step.table,
            r.name,
            r.status,
            f" ({r.message})" if r.message else "",
        )
    stopped = [r for r in results if r.severity == "critical" and r.status in ("failed", "errored")]
    if stopped:
        names = ", ".join(f"{r.name} ({r.message})" for r in stopped)
        raise QualityFailedError(
            f"critical quality checks on {step.table} did not pass: {names}",
            details,
            hint="fix the data or the check; 'severity: warning' records a failure without "
            "stopping the pipeline",
        )
    return details


def _warehouse(step: QualityStep, pipeline: Pipeline, resources: RunResources) -> Warehouse:
    """The warehouse of the step's connection; a connection that is none is a ConfigError
    naming the step, the connection type and the choices."""
    conn = pipeline.connections[step.connection]
    try:
        return open_warehouse(conn, resources)
    except ConfigError as exc:
        raise ConfigError(
            f"quality step '{step.step_id}': checks run in a warehouse, not in {conn.kind}",
            hint=exc.hint,
            code=exc.code,
        ) from None


def _run(warehouse: Warehouse, query: exp.Expression | str) -> pa.Table:
    """A check's query (an expression rendered in the warehouse's dialect, or the user's
    own SQL) run in the warehouse."""
    sql = query if isinstance(query, str) else query.sql(dialect=warehouse.dialect)
    log.debug("quality SQL: %s", sql)
    return warehouse.query(sql)


def run_check(check: CheckSpec, step: QualityStep, warehouse: Warehouse) -> CheckResult:
    result = CheckResult(check.label, check.check, step.table, check.severity, "passed")
    try:
        if check.check in ROW_CHECK_KINDS:
            _row_check(check, step, warehouse, result)
        else:
            _TABLE_CHECKS[check.check](check, step, warehouse, result)
    except DeltaFlowError as exc:
        result.status, result.message = "errored", str(exc)
    except Exception as exc:  # a driver's error: the check could not run
        result.status, result.message = "errored", f"{type(exc).__name__}: {exc}"
    return result


# --------------------------------------------------------------------------- SQL pieces


def _table(step: QualityStep, warehouse: Warehouse) -> exp.Table:
    """The checked table; a bare name is in the warehouse's default schema (dataset)."""
    from sqlglot import exp

    schema, name = split_table(step.table, warehouse.default_schema)
    return exp.Table(
        this=exp.to_identifier(name, quoted=True), db=exp.to_identifier(schema, quoted=True)
    )


def _column(name: str) -> exp.Column:
    from sqlglot import exp

    return exp.column(name, quoted=True)


def _literal(value: Any) -> exp.Expression:
    from sqlglot import exp

    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def _where(check: CheckSpec, dialect: str) -> Any:
    import sqlglot

    if not check.filter:
        return None
    try:
        return sqlglot.condition(check.filter, dialect=dialect)
    except sqlglot.errors.ParseError as exc:
        raise ConfigError(
            f"filter of {check.label} is not a SQL condition: {exc}",
            hint="write a condition such as \"status = 'paid'\"",
        ) from None


def _failing(check: CheckSpec) -> Any:
    """The condition a failing row meets; on a NULL it is NULL, never true, so NULL
    passes every check but not_null."""
    from sqlglot import exp

    column = _column(check.column or "")
    if check.check == "not_null":
        return exp.Is(this=column, expression=exp.Null())
    if check.check == "accepted_values":
        assert check.values is not None
        return exp.Not(this=exp.In(this=column, expressions=[_literal(v) for v in check.values]))
    if check.check == "regex":
        assert check.pattern is not None
        return exp.Not(
            this=exp.RegexpLike(this=column, expression=exp.Literal.string(check.pattern))
        )
    outside: list[exp.Expression] = []  # between
    if check.min is not None:
        below = exp.LTE if check.strict_min else exp.LT
        outside.append(below(this=column, expression=_literal(check.min)))
    if check.max is not None:
        above = exp.GTE if check.strict_max else exp.GT
        outside.append(above(this=column, expression=_literal(check.max)))
    return exp.or_(*outside)


def _row_check(
    check: CheckSpec, step: QualityStep, warehouse: Warehouse, result: CheckResult
) -> None:
    table, where = _table(step, warehouse), _where(check, warehouse.dialect)
    build = _unique_queries if check.check == "unique" else _value_queries
    counted, sample = build(check, step, table, where)
    row = _first(_run(warehouse, counted))
    elements, checked = int(row.get("element_count") or 0), int(row.get("rows_checked") or 0)
    failing = int(row.get("failing") or 0)
    result.element_count, result.rows_checked, result.failing_rows = elements, checked, failing
    result.missing_count = None if check.check == "not_null" else elements - checked
    result.unexpected_percent = failing / checked * 100 if checked else None  # as GE
    result.observed = failing
    if failing and step.sample_size:
        result.sample = _jsonable(_run(warehouse, sample).to_pylist())
    _judge(check, result)


def _value_queries(
    check: CheckSpec, step: QualityStep, table: exp.Table, where: Any
) -> tuple[exp.Select, exp.Select]:
    """The counts of a check on one column's values, and a sample of the failing rows."""
    from sqlglot import exp

    failing = _failing(check)
    every = exp.func("COUNT", exp.Star())
    checked = every if check.check == "not_null" else exp.func("COUNT", _column(check.column or ""))
    counted = (
        exp.select(
            every.copy().as_("element_count"),
            checked.as_("rows_checked"),
            exp.func("SUM", exp.Case().when(failing, _literal(1)).else_(_literal(0))).as_(
                "failing"
            ),
        )
        .from_(table)
        .where(where)
    )
    sample = (
        exp.select(exp.Star())
        .from_(table)
        .where(exp.and_(where, failing) if where is not None else failing)
        .limit(step.sample_size)
    )
    return counted, sample


def _unique_queries(
    check: CheckSpec, step: QualityStep, table: exp.Table, where: Any
) -> tuple[exp.Select, exp.Select]:
    """The counts of a unique check, and a sample of the repeated keys. A row whose key
    columns are all NULL is not checked (GE's expect_column_values_to_be_unique, and
    expect_compound_columns_to_be_unique's default ignore_row_if); every other row fails
    when its key occurs more than once, NULLs within a key comparing equal."""
    from sqlglot import exp

    names = check.columns or []
    keys = [_column(c) for c in names]
    present = exp.or_(*(exp.Not(this=exp.Is(this=k.copy(), expression=exp.Null())) for k in keys))
    rows = "rows_"
    while rows in names:  # the count's name is none of the key columns'
        rows += "_"
    groups = (
        exp.select(*keys, exp.func("COUNT", exp.Star()).as_(rows, quoted=True))
        .from_(table)
        .where(where)
        .group_by(*keys)
    )
    n = exp.column(rows, quoted=True)
    repeated = exp.GT(this=n.copy(), expression=_literal(1))
    counted = exp.select(
        exp.func("SUM", n.copy()).as_("element_count"),
        exp.func("SUM", exp.Case().when(present, n.copy()).else_(_literal(0))).as_("rows_checked"),
        exp.func(
            "SUM",
            exp.Case().when(exp.and_(present.copy(), repeated), n.copy()).else_(_literal(0)),
        ).as_("failing"),
    ).from_(groups.subquery("g"))
    sample = (
        exp.select(*[k.copy() for k in keys], exp.func("COUNT", exp.Star()).as_("rows"))
        .from_(table)
        .where(exp.and_(where, present.copy()) if where is not None else present.copy())
        .group_by(*[k.copy() for k in keys])
        .having(exp.GT(this=exp.func("COUNT", exp.Star()), expression=_literal(1)))
        .limit(step.sample_size)
    )
    return counted, sample


def _first(table: pa.Table) -> dict[str, Any]:
    rows = table.to_pylist()
    return rows[0] if rows else {}


def _judge(check: CheckSpec, result: CheckResult) -> None:
    """passed, or failed/warned by severity: a check passes when no more rows fail than
    ``max_failures``, or when the share of the rows checked that pass reaches ``mostly``
    (computed as Great Expectations does; no rows checked pass), or when the share that
    fail is within ``max_failure_percent``."""
    failing, checked = result.failing_rows or 0, result.rows_checked or 0
    ok = failing <= check.max_failures
    if not ok and checked and check.mostly is not None:
        ok = (float(checked) - float(failing)) / float(checked) >= check.mostly
    if not ok and checked and check.max_failure_percent is not None:
        ok = 100.0 * failing / checked <= check.max_failure_percent
    if not ok:
        result.status = "failed" if check.severity == "critical" else "warned"
        if not result.message:
            result.message = f"{failing:,} of {checked:,} rows fail" + (
                f"; mostly {check.mostly} asks {check.mostly:.0%} to pass"
                if check.mostly is not None
                else ""
            )


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v if isinstance(v, int | float | str | bool | None) else str(v) for k, v in r.items()}
        for r in rows
    ]


# --------------------------------------------------------------------------- table checks


def _row_count(
    check: CheckSpec, step: QualityStep, warehouse: Warehouse, result: CheckResult
) -> None:
    from sqlglot import exp

    query = (
        exp.select(exp.func("COUNT", exp.Star()).as_("n"))
        .from_(_table(step, warehouse))
        .where(_where(check, warehouse.dialect))
    )
    count = int(_first(_run(warehouse, query)).get("n") or 0)
    result.observed = count
    low_ok = check.min is None or (count > check.min if check.strict_min else count >= check.min)
    high_ok = check.max is None or (count < check.max if check.strict_max else count <= check.max)
    if not (low_ok and high_ok):
        result.status = "failed" if check.severity == "critical" else "warned"
        low = "" if check.min is None else f"{'>' if check.strict_min else '>='} {check.min}"
        high = "" if check.max is None else f"{'<' if check.strict_max else '<='} {check.max}"
        result.message = f"{count:,} rows, expected {' and '.join(x for x in (low, high) if x)}"


def _freshness(
    check: CheckSpec, step: QualityStep, warehouse: Warehouse, result: CheckResult
) -> None:
    from sqlglot import exp

    assert check.column is not None
    assert check.max_age is not None
    query = (
        exp.select(exp.func("MAX", _column(check.column)).as_("newest"))
        .from_(_table(step, warehouse))
        .where(_where(check, warehouse.dialect))
    )
    newest = _first(_run(warehouse, query)).get("newest")
    result.observed = None if newest is None else str(newest)
    if newest is None:
        age = None
    else:
        if isinstance(newest, dt.date) and not isinstance(newest, dt.datetime):
            newest = dt.datetime.combine(newest, dt.time(), dt.UTC)
        if newest.tzinfo is None:
            newest = newest.replace(tzinfo=dt.UTC)
        age = (dt.datetime.now(dt.UTC) - newest).total_seconds()
    if age is None or age > duration_seconds(check.max_age):
        result.status = "failed" if check.severity == "critical" else "warned"
        result.message = (
            "no rows"
            if age is None
            else f"newest {check.column} is {age / 3600:.1f} h old, more than {check.max_age}"
        )


def _schema(check: CheckSpec, step: QualityStep, warehouse: Warehouse, result: CheckResult) -> None:
    from sqlglot import exp

    assert check.expected is not None
    query = exp.select(exp.Star()).from_(_table(step, warehouse)).limit(0)
    actual = TableSchema.from_arrow(_run(warehouse, query).schema)
    problems = []
    for name, wanted in check.expected.items():
        column = actual.column(name)
        expected = parse_type(wanted)
        if column is None:
            problems.append(f"{name} is missing")
        elif _kind(column.type) != _kind(expected):
            problems.append(f"{name} is {column.type}, expected {wanted}")
    result.observed = {c.name: str(c.type) for c in actual.columns}
    if problems:
        result.status = "failed" if check.severity == "critical" else "warned"
        result.message = "; ".join(problems)


def _kind(logical: Any) -> str:
    """Types compared loosely: every integer width is 'integer', decimals by kind."""
    if logical.kind.startswith(("int", "uint")):
        return "integer"
    if logical.kind.startswith("float"):
        return "float"
    if logical.kind == "timestamp":
        return "timestamptz" if logical.tz else "timestamp"
    return str(logical.kind)


def _custom_sql(
    check: CheckSpec, step: QualityStep, warehouse: Warehouse, result: CheckResult
) -> None:
    assert check.sql is not None
    rows = _run(warehouse, check.sql)
    if rows.num_columns == 1 and rows.num_rows == 1 and _number(rows.column(0)[0].as_py()):
        value = rows.column(0)[0].as_py()
        result.observed = value
        result.failing_rows = int(value)
    else:
        result.failing_rows = rows.num_rows
        result.observed = rows.num_rows
        result.sample = _jsonable(rows.slice(0, step.sample_size).to_pylist())
    _judge(check, result)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TABLE_CHECKS = {
    "row_count": _row_count,
    "freshness": _freshness,
    "schema": _schema,
    "custom_sql": _custom_sql,
}
