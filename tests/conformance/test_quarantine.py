"""Rejected records handed to a load land in ``<table>__quarantine`` (``deltaflow.quarantine``)
with the load's rows, and not at all when the load fails."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from deltaflow import quarantine
from tests.conformance.conftest import Boom, Target, arrow, destinations, failing_reader, reader

SCHEMA = pa.schema([("id", pa.int64()), ("amount", pa.int64())])
QUARANTINE_COLUMNS = ["run_id", "quarantined_at", "stream", "reason_code", "reason", "record"]


def rejected(*ids: int) -> pa.Table:
    """Quarantine records for rows whose amount is negative."""
    rows = arrow([{"id": i, "amount": -i} for i in ids], SCHEMA)
    reasons = pa.array([f"amount {-i} is below 0" for i in ids])
    return quarantine.records(rows, reasons, "CHECK_BETWEEN", run_id="run-1", stream="orders")


@pytest.mark.parametrize("target", destinations(), indirect=True)
def test_rejected_records_land_in_the_quarantine_table_with_the_rows(target: Target) -> None:
    good = arrow([{"id": 1, "amount": 10}, {"id": 2, "amount": 20}], SCHEMA)
    destination = target.prepared("orders", good)

    result = destination.load(reader(good), "append", (), rejected=lambda: rejected(3, 4))

    assert result.rows_loaded == 2
    assert result.rows_quarantined == 2
    assert str(result.details["quarantine_table"]).endswith(f"orders{quarantine.SUFFIX}")
    assert target.sorted_rows("orders") == good.to_pylist()
    assert target.columns(f"orders{quarantine.SUFFIX}") == QUARANTINE_COLUMNS
    stored = target.quarantined("orders")
    assert sorted(json.loads(r["record"])["id"] for r in stored) == [3, 4]
    assert {(r["run_id"], r["stream"], r["reason_code"]) for r in stored} == {
        ("run-1", "orders", "CHECK_BETWEEN")
    }
    assert sorted(r["reason"] for r in stored) == ["amount -3 is below 0", "amount -4 is below 0"]


@pytest.mark.parametrize("target", destinations(), indirect=True)
def test_a_failed_load_quarantines_nothing(target: Target) -> None:
    good = arrow([{"id": 1, "amount": 10}, {"id": 2, "amount": 20}], SCHEMA)
    destination = target.prepared("orders", good)
    destination.load(reader(good), "append", (), rejected=lambda: rejected(3))

    with pytest.raises(Boom):
        destination.load(failing_reader(good, 1), "append", (), rejected=lambda: rejected(5))

    assert [json.loads(r["record"])["id"] for r in target.quarantined("orders")] == [3]
    assert len(target.rows("orders")) == 2
