"""Data-quality checks, pushed down to the warehouse as SQL.

Every check is built as a sqlglot expression and rendered in the warehouse's dialect
(DuckDB, PostgreSQL, BigQuery): identifiers are quoted, values are literals, and a
check's ``filter`` is parsed as a condition, so nothing from config is pasted into SQL
text. ``custom_sql`` is the user's own query and runs as written.

Row checks (not_null, unique, between, accepted_values, regex) count the rows checked
and the rows failing, and keep a few failing rows as a sample; table checks (row_count,
freshness, schema, custom_sql) observe one value. A check fails when its failing rows
exceed ``max_failures`` (and ``max_failure_percent``); a failed ``critical`` check stops
the pipeline, a failed ``warning`` is recorded as ``warned``; a check that cannot run
(a missing column, bad SQL) is ``errored``, which stops the pipeline when critical.

The table's quality score (0-100) is the mean of its checks' scores: a row check scores
the share of checked rows that pass, a table check 100 when it passes, an errored check 0.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from deltaflow.config.models import CheckSpec, QualityStep, duration_seconds
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

ROW_CHECKS = ("not_null", "unique", "between", "accepted_values", "regex")


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
        if check.check in ROW_CHECKS:
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
    """The condition a failing row meets (NULLs pass every check but not_null)."""
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
        low = _literal(check.min)
        outside.append(
            exp.LT(this=column, expression=low)
            if check.inclusive
            else exp.LTE(this=column, expression=low)
        )
    if check.max is not None:
        high = _literal(check.max)
        outside.append(
            exp.GT(this=column, expression=high)
            if check.inclusive
            else exp.GTE(this=column, expression=high)
        )
    return exp.or_(*outside)


def _row_check(
    check: CheckSpec, step: QualityStep, warehouse: Warehouse, result: CheckResult
) -> None:
    from sqlglot import exp

    table, where = _table(step, warehouse), _where(check, warehouse.dialect)
    if check.check == "unique":
        keys = [_column(c) for c in check.columns or []]
        groups = (
            exp.select(*keys, exp.func("COUNT", exp.Star()).as_("n"))
            .from_(table)
            .where(where)
            .group_by(*keys)
        )
        counted = exp.select(
            exp.func("SUM", exp.column("n")).as_("rows_checked"),
            exp.func(
                "SUM",
                exp.Case()
                .when(exp.GT(this=exp.column("n"), expression=_literal(1)), exp.column("n"))
                .else_(_literal(0)),
            ).as_("failing"),
        ).from_(groups.subquery("g"))
        sample = (
            exp.select(*keys, exp.func("COUNT", exp.Star()).as_("rows"))
            .from_(table)
            .where(where)
            .group_by(*keys)
            .having(exp.GT(this=exp.func("COUNT", exp.Star()), expression=_literal(1)))
            .limit(step.sample_size)
        )
    else:
        failing = _failing(check)
        counted = (
            exp.select(
                exp.func("COUNT", exp.Star()).as_("rows_checked"),
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
    row = _first(_run(warehouse, counted))
    checked, failing_rows = row.get("rows_checked"), row.get("failing")
    result.rows_checked, result.failing_rows = int(checked or 0), int(failing_rows or 0)
    result.observed = result.failing_rows
    if result.failing_rows and step.sample_size:
        result.sample = _jsonable(_run(warehouse, sample).to_pylist())
    _judge(check, result)


def _first(table: pa.Table) -> dict[str, Any]:
    rows = table.to_pylist()
    return rows[0] if rows else {}


def _judge(check: CheckSpec, result: CheckResult) -> None:
    """passed, or failed/warned by severity, from the failing rows and the threshold."""
    failing, checked = result.failing_rows or 0, result.rows_checked or 0
    over = failing > check.max_failures
    if check.max_failure_percent is not None and checked:
        over = over and 100.0 * failing / checked > check.max_failure_percent
    if over:
        result.status = "failed" if check.severity == "critical" else "warned"
        result.message = result.message or f"{failing:,} of {checked:,} rows fail"


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
    low_ok = check.min is None or (count >= check.min if check.inclusive else count > check.min)
    high_ok = check.max is None or (count <= check.max if check.inclusive else count < check.max)
    if not (low_ok and high_ok):
        result.status = "failed" if check.severity == "critical" else "warned"
        result.message = f"{count:,} rows, expected between {check.min} and {check.max}"


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
