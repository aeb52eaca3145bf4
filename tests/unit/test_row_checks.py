"""Row checks in flight (deltaflow.quality.inflight): what each action does to a batch."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.config.models import RowCheckSpec
from deltaflow.errors import ConfigError, DataError, SchemaError
from deltaflow.quality.inflight import RowChecks

BATCH = pa.record_batch(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "status": pa.array(["new", "lost", None, "paid"]),
        "email": pa.array(["a@x.io", "nope", "b@x.io", None]),
        "total": pa.array([5.0, -1.0, 50.0, 500.0]),
    }
)


def checks(*specs: dict[str, object]) -> RowChecks:
    found = RowChecks([RowCheckSpec.model_validate(s) for s in specs], "run1", "orders")
    found.prepare(BATCH.schema.names)
    return found


def test_quarantine_keeps_the_passing_rows_and_holds_the_others_with_a_reason() -> None:
    rows = checks(
        {"check": "accepted_values", "column": "status", "values": ["new", "paid"]},
        {"check": "between", "column": "total", "min": 0, "max": 100},
    )
    kept = rows.apply(BATCH)
    assert kept.column("id").to_pylist() == [1, 3]  # NULL status passes accepted_values
    held = rows.take()
    assert held is not None
    assert held.column("reason").to_pylist() == [
        "accepted_values(status): lost fails the check",  # the first failing check wins
        "between(total): 500 fails the check",
    ]
    assert rows.summary() == [
        {"check": "accepted_values(status)", "action": "quarantine", "failing_rows": 1},
        {"check": "between(total)", "action": "quarantine", "failing_rows": 2},
    ]


def test_warn_counts_and_loads_every_row() -> None:
    rows = checks({"check": "regex", "column": "email", "pattern": "@", "action": "warn"})
    assert rows.apply(BATCH).num_rows == 4
    assert rows.take() is None
    assert rows.summary()[0]["failing_rows"] == 1  # NULL passes a regex


def test_fail_stops_the_step_with_the_check_and_a_value() -> None:
    rows = checks({"check": "not_null", "column": "email", "action": "fail"})
    with pytest.raises(DataError, match=r"row check not_null\(email\) failed on 1 rows"):
        rows.apply(BATCH)


def test_only_row_checks_on_known_columns_run_in_flight() -> None:
    with pytest.raises(ConfigError, match="cannot run in flight"):
        checks({"check": "unique", "columns": ["id"]})
    with pytest.raises(SchemaError, match=r"no column emial.*Did you mean 'email'"):
        checks({"check": "not_null", "column": "emial"})


def test_great_expectations_names_and_parameters_run_in_flight() -> None:
    rows = checks(
        {"type": "expect_column_values_to_be_in_set", "column": "status",
         "value_set": ["new", "paid"], "action": "warn"},
        {"type": "expect_column_values_to_match_regex", "column": "email", "regex": "@x",
         "action": "warn"},
        {"type": "expect_column_values_to_not_be_null", "column": "status", "action": "warn"},
    )  # fmt: skip
    assert rows.apply(BATCH).num_rows == 4
    assert [c["failing_rows"] for c in rows.summary()] == [1, 1, 1]  # lost; nope; NULL


@pytest.mark.parametrize(
    ("bounds", "kept_ids"),
    [
        ({"min": 5, "max": 50}, [1, 3]),  # total 5.0, -1.0, 50.0, 500.0
        ({"min": 5, "max": 50, "strict_min": True}, [3]),
        ({"min": 5, "max": 50, "strict_max": True}, [1]),
        ({"min_value": 5, "max_value": 50, "inclusive": False}, []),
        ({"max": 50, "strict_max": True}, [1, 2]),
    ],
)
def test_strict_bounds_exclude_the_bound_itself(
    bounds: dict[str, object], kept_ids: list[int]
) -> None:
    rows = checks({"check": "between", "column": "total", **bounds})
    assert rows.apply(BATCH).column("id").to_pylist() == kept_ids


def test_a_fractional_bound_on_an_integer_column_is_not_truncated() -> None:
    rows = checks({"check": "between", "column": "id", "min": 1.5, "max": 3.5, "action": "warn"})
    rows.apply(BATCH)
    assert rows.summary()[0]["failing_rows"] == 2  # ids 1 and 4; 2 and 3 are within


def test_mostly_is_refused_in_flight_with_where_to_run_it() -> None:
    with pytest.raises(ValueError, match="run the check in a quality step after the load"):
        RowCheckSpec.model_validate({"check": "not_null", "column": "email", "mostly": 0.9})
