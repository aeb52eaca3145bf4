"""Row checks on a sync's batches, in flight: a failing row is quarantined before it
loads (``action: quarantine``), stops the step (``fail``) or is counted (``warn``).

The row checks of a quality step (not_null, between, accepted_values, regex) are
evaluated with Arrow compute on each batch, on the stream's own columns, with the
meaning they have there and in Great Expectations: NULL passes every check but
not_null, strict_min/strict_max exclude the bounds, a regex passes a value that contains
a match. A row failing several checks is quarantined once, with the first reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.errors import Code, ConfigError, DataError, SchemaError, did_you_mean

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.models import RowCheckSpec

IN_FLIGHT = ("not_null", "between", "accepted_values", "regex")


@dataclass
class RowChecks:
    """The sync step's row checks, applied batch by batch."""

    checks: list[RowCheckSpec]
    run_id: str
    stream: str
    failing: dict[str, int] = field(default_factory=dict)
    held: list[pa.Table] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self, names: list[str]) -> None:
        for check in self.checks:
            if check.check not in IN_FLIGHT:
                raise ConfigError(
                    f"row check {check.label} cannot run in flight",
                    hint=f"in flight: {', '.join(IN_FLIGHT)}; run {check.check} in a quality "
                    "step after the load",
                )
            if check.column not in names:
                raise SchemaError(
                    f"row check {check.label}: no column {check.column} in stream "
                    f"{self.stream}.{did_you_mean(check.column or '', names)}",
                    hint=f"columns: {', '.join(names)}",
                )
            self.failing.setdefault(check.label, 0)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch without the rows quarantined; fails the step on a ``fail`` check."""
        import pyarrow as pa
        import pyarrow.compute as pc

        reasons: list[Any] = []
        for check in self.checks:
            name = check.column or ""
            bad = _failing(check, batch.column(name))
            count = int(pc.sum(pc.cast(bad, pa.int64())).as_py() or 0)
            if not count:
                continue
            with self.lock:
                self.failing[check.label] += count
            values: Any = batch.column(name).filter(bad)
            if check.action == "fail":
                raise DataError(
                    f"row check {check.label} failed on {count} rows of {self.stream} "
                    f"(first value: {values[0].as_py()!r})",
                    hint="fix the rows at the source, relax the check, or set its action to "
                    "quarantine or warn",
                    code=Code.QUALITY_ROW_CHECK_FAILED,
                )
            if check.action == "quarantine":
                shown: Any = batch.column(name).cast(pa.string())
                text: Any = pc.binary_join_element_wise(
                    f"{check.label}: ", pc.fill_null(shown, "NULL"), " fails the check", ""
                )
                reasons.append(pc.if_else(bad, text, pa.scalar(None, pa.string())))
        if not reasons:
            return batch
        reason: Any = reasons[0] if len(reasons) == 1 else pc.coalesce(*reasons)
        out = pc.is_valid(reason)
        rows = pa.Table.from_batches([batch.filter(out)])
        records = quarantine.records(
            rows, reason.filter(out), "QUALITY_CHECK", run_id=self.run_id, stream=self.stream
        )
        with self.lock:
            self.held.append(records)
        return batch.filter(pc.invert(out))

    def take(self) -> pa.Table | None:
        import pyarrow as pa

        with self.lock:
            held, self.held = self.held, []
        return pa.concat_tables(held) if held else None

    def summary(self) -> list[dict[str, Any]]:
        return [
            {"check": c.label, "action": c.action, "failing_rows": self.failing.get(c.label, 0)}
            for c in self.checks
        ]


def _failing(check: RowCheckSpec, column: Any) -> Any:
    """Where the rows fail (never NULL: NULL passes every check but not_null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if check.check == "not_null":
        return pc.is_null(column)
    if check.check == "accepted_values":
        assert check.values is not None
        allowed = pa.array(list(check.values)).cast(column.type)  # type: ignore[arg-type]
        outside = pc.invert(pc.is_in(column, value_set=allowed))
        return pc.and_(pc.is_valid(column), pc.fill_null(outside, False))  # NULL passes
    if check.check == "regex":
        assert check.pattern is not None
        return pc.fill_null(pc.invert(pc.match_substring_regex(column, check.pattern)), False)
    bad = pa.array([False] * len(column))
    if check.min is not None:
        below = pc.less_equal if check.strict_min else pc.less
        bad = pc.or_(bad, pc.fill_null(below(column, _bound(check.min, column.type)), False))
    if check.max is not None:
        above = pc.greater_equal if check.strict_max else pc.greater
        bad = pc.or_(bad, pc.fill_null(above(column, _bound(check.max, column.type)), False))
    return bad


def _bound(value: float, kind: pa.DataType) -> Any:
    """A bound as a scalar comparable with the column: an integer column keeps a
    fractional bound as a float (2.5 stays 2.5, never truncated to 2)."""
    import pyarrow as pa

    if pa.types.is_integer(kind) and not float(value).is_integer():
        return pa.scalar(float(value))
    return pa.scalar(value).cast(kind)
