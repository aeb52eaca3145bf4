"""The metrics engine's rules for awkward values, and its placeholders."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from deltaflow.errors import MetricError, PartitionValidationError
from deltaflow.metrics.engine import exact
from deltaflow.metrics.placeholders import fill, partition_tables


def test_results_are_exact_decimals_with_nine_places() -> None:
    assert exact(None, "metric_output") is None  # NULL stays NULL
    assert exact(33.33, "metric_output") == Decimal("33.330000000")  # the float's shortest text
    assert exact("0.1234567894", "x") == Decimal("0.123456789")
    assert exact("0.1234567895", "x") == Decimal("0.123456790")  # half away from zero
    assert exact(Decimal("-0.0000000005"), "x") == Decimal("-1E-9")
    assert exact(0, "denominator_value") == Decimal(0)  # a zero denominator is kept


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "NaN", "1e30"])
def test_values_a_numeric_cannot_hold_fail_the_metric(value: object) -> None:
    with pytest.raises(MetricError) as caught:
        exact(value, "metric_output")
    assert caught.value.code == "SQL_EXECUTION_ERROR"
    assert "metric_output" in caught.value.message


def test_partition_info_belongs_to_the_table_its_select_reads() -> None:
    sql = (
        "SELECT a.x AS metric_output FROM (SELECT COUNT(*) x FROM sales.orders "
        "WHERE d = {partition_info}) a CROSS JOIN (SELECT 1 FROM refunds "
        "WHERE day = '{partition_info}' AND k = '{currently}')"
    )
    assert partition_tables(sql) == ["sales.orders", "refunds"]
    filled = fill(sql, dt.date(2024, 1, 15), [dt.date(2024, 1, 13), dt.date(2024, 1, 14)])
    assert "d = DATE '2024-01-13'" in filled
    assert "day = '2024-01-14' AND k = '2024-01-15'" in filled


def test_partition_info_outside_a_select_with_a_table_is_refused() -> None:
    with pytest.raises(PartitionValidationError):
        partition_tables("SELECT {partition_info} AS metric_output")


def test_bigquery_functions_are_rewritten_to_give_bigquerys_answers() -> None:
    from deltaflow.metrics.dialect import transpile

    sql = "SELECT EXTRACT(DAYOFWEEK FROM d) AS w, GREATEST(a, b) AS g FROM t"
    assert transpile(sql, "postgres") == (
        "SELECT CAST(EXTRACT(DOW FROM d) + 1 AS BIGINT) AS w, "
        "CASE WHEN a IS NULL OR b IS NULL THEN NULL ELSE GREATEST(a, b) END AS g FROM t"
    )
    assert transpile(sql, "bigquery") == sql  # BigQuery runs its own SQL as written
    # SQL in another dialect is sqlglot's translation only: the rules are BigQuery's
    assert transpile("SELECT EXTRACT(DOW FROM d) FROM t", "postgres", read="duckdb") == (
        "SELECT EXTRACT(DOW FROM d) FROM t"
    )


def test_only_a_subquery_in_from_gets_an_alias() -> None:
    from deltaflow.metrics.dialect import transpile

    sql = "SELECT (SELECT MAX(x) FROM t) AS m FROM (SELECT 1 AS x)"
    assert transpile(sql, "postgres") == (
        "SELECT (SELECT MAX(x) FROM t) AS m FROM (SELECT 1 AS x) AS _q1"
    )


def test_a_refused_function_names_itself_the_engine_and_what_to_use_instead() -> None:
    from deltaflow.metrics.dialect import RefusedFunctionError, transpile

    with pytest.raises(RefusedFunctionError) as caught:
        transpile("SELECT SAFE_CAST(x AS INT64) AS v FROM t", "postgres")
    assert caught.value.code == "SQL_EXECUTION_ERROR"
    assert caught.value.message.startswith("SAFE_CAST is refused on PostgreSQL: ")
    assert "; instead, " in caught.value.message
    assert transpile("SELECT SAFE_CAST(x AS INT64) AS v FROM t", "duckdb") == (
        "SELECT TRY_CAST(x AS BIGINT) AS v FROM t"
    )


def test_metrics_validate_reports_each_refusal_on_each_engine() -> None:
    import json

    from deltaflow.metrics.definitions import parse

    metric = {
        "metric_id": "m1",
        "metric_name": "M1",
        "metric_type": "count",
        "sql": "SELECT APPROX_QUANTILES(x, 2)[SAFE_OFFSET(1)] AS metric_output, "
        "SAFE_CAST(y AS INT64) AS numerator_value, 1 AS denominator_value, "
        "'{currently}' AS business_data_date FROM t",
        "dependency": "daily",
        "target_table": "analytics.metrics",
    }
    metrics, problems = parse(json.dumps([metric]))
    assert metrics == []
    assert [p.message.split(":")[0] for p in problems] == [
        "APPROX_QUANTILES is refused on DuckDB",
        "SAFE_CAST is refused on PostgreSQL",
        "APPROX_QUANTILES is refused on PostgreSQL",
    ]
    assert {p.field for p in problems} == {"sql"}
