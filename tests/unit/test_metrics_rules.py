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
