"""When a sync must keep the source's batch order, and when it may take batches as they come."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.config.models import SyncStep
from deltaflow.schema.types import TableSchema
from deltaflow.sync.runner import _order_matters

SCHEMA = pa.schema(
    [pa.field("id", pa.int64()), pa.field("region", pa.string()), pa.field("v", pa.float64())]
)


def step(write_mode: str) -> SyncStep:
    return SyncStep.model_validate(
        {
            "step_id": "s",
            "type": "sync",
            "source": {"connection": "src", "table": "t"},
            "destination": {
                "connection": "dst",
                "table": "t",
                "write_mode": write_mode,
                "primary_key": ["id"] if write_mode == "merge" else [],
            },
        }
    )


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_append_and_replace_take_batches_as_they_come(mode: str) -> None:
    assert not _order_matters(step(mode), TableSchema.from_arrow(SCHEMA), ())


def test_merge_keeps_order_when_the_source_may_repeat_a_key() -> None:
    # No primary key known at the source (a file, a query): the last row of a key wins,
    # so "last" must mean the same on every run.
    assert _order_matters(step("merge"), TableSchema.from_arrow(SCHEMA), ("id",))


def test_merge_keeps_order_when_the_source_key_is_not_inside_the_merge_key() -> None:
    schema = TableSchema.from_arrow(SCHEMA, primary_key=("id", "region"))
    assert _order_matters(step("merge"), schema, ("id",))


def test_merge_on_the_source_key_cannot_see_a_key_twice() -> None:
    schema = TableSchema.from_arrow(SCHEMA, primary_key=("id",))
    assert not _order_matters(step("merge"), schema, ("id",))
    assert not _order_matters(step("merge"), schema, ("id", "region"))
