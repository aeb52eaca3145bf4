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
