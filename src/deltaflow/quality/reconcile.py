"""Reconcile a sync step's source and destination tables, row by row, without moving them.

Both sides are compared by count, then by hashed ranges of the primary key: every row
is put in one of ``buckets`` ranges of its key (by value for a single integer key, else
by a hash of the key) and fingerprinted by the md5 of its values as text; each side
returns one (rows, sum of fingerprints) per range, computed where the table lives, both
sides at once. Only the ranges that differ are read again, key by key,
to name the keys missing on either side or changed. A single changed row among a
million is found in two passes over each table.

Fingerprints are computed from the values' text, written the same way by DuckDB and
PostgreSQL so that the two can be compared with each other: integers, decimals, text,
dates and booleans as the engines write them, timestamps in UTC with microseconds,
floats at 6 decimal places (values above about 1e9 at the 15 significant digits
PostgreSQL keeps when it converts them).

The result is a reconciliation record in the Metrics framework's shape (module, source
and target, pass indicator, latest partition dates, load timestamp, scheduled date and
year, source system id, job name), appended to a table in the destination warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from deltaflow.config.models import SyncStep
from deltaflow.config.sources import SqlSource
from deltaflow.connectors.protocol import RunResources, split_table
from deltaflow.connectors.registry import open_warehouse
from deltaflow.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import ConnectionBase
    from deltaflow.config.loader import LoadedPipeline
    from deltaflow.connectors.protocol import Warehouse

SEPARATOR = "chr(31)"  # between values in a row's text: a control character, not in data
RECON_TABLE = "_deltaflow_reconciliation"


@dataclass
class Side:
    """One table in one warehouse."""

    conn: ConnectionBase
    table: str
    resources: RunResources
    types: dict[str, pa.DataType] = field(default_factory=dict)

    @cached_property
    def warehouse(self) -> Warehouse:
        return open_warehouse(self.conn, self.resources)

    @property
    def kind(self) -> str:
        return self.warehouse.kind

    @property
    def target(self) -> str:
        return self.warehouse.table_ref(self.table)

    def quote(self, column: str) -> str:
        return self.warehouse.quote(column)

    def run(self, sql: str) -> pa.Table:
        return self.warehouse.query(sql)

    def columns(self) -> list[str]:
        """The table's columns (their types kept for ``text``)."""
        schema = self.run(f"SELECT * FROM {self.target} LIMIT 0").schema
        self.types = {f.name: f.type for f in schema}
        return list(schema.names)

    def text(self, column: str) -> str:
        """A column's value as text, written the same by every engine that reconciles
        (timestamps in UTC with microseconds); NULL as \\N. A column of unknown type is
        written as the engine writes it."""
        import pyarrow as pa

        return self.warehouse.text_sql(column, self.types.get(column, pa.null()))

    def row_text(self, columns: list[str]) -> str:
        return f"concat_ws({SEPARATOR}, {', '.join(self.text(c) for c in columns)})"

    def hash28(self, text: str) -> str:
        """The first 7 hex digits of md5(text) as a non-negative integer."""
        return self.warehouse.hash28_sql(text)


@dataclass
class Reconciliation:
    source_rows: int
    target_rows: int
    buckets: int
    differing_buckets: int
    missing_in_target: list[str] = field(default_factory=list)
    missing_in_source: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.source_rows == self.target_rows
            and not self.missing_in_target
            and not self.missing_in_source
            and not self.changed
        )


def sides(loaded: LoadedPipeline, step_id: str, run_id: str) -> tuple[SyncStep, Side, Side]:
    steps = {s.step_id: s for s in loaded.pipeline.steps if isinstance(s, SyncStep)}
    step = steps.get(step_id)
    if step is None:
        raise ConfigError(
            f"no sync step '{step_id}' in this pipeline.{did_you_mean(step_id, steps)}",
            hint=f"sync steps: {', '.join(steps)}",
        )
    source, destination = step.all_sources[0], step.destination
    connections = loaded.pipeline.connections
    resources = RunResources(loaded.base_dir, run_id)
    pair = []
    for spec_table, conn_name, role in (
        (source.table if isinstance(source, SqlSource) else None, source.connection, "source"),
        (destination.table, destination.connection, "destination"),
    ):
        if not spec_table or len(step.all_sources) > 1:
            raise ConfigError(
                f"step '{step_id}' cannot be reconciled: its {role} is not one table",
                hint="reconcile compares a sync step's one source table with its destination",
            )
        pair.append(_side(step_id, role, connections[conn_name], spec_table, resources))
    return step, pair[0], pair[1]


def _side(
    step_id: str, role: str, conn: ConnectionBase, table: str, resources: RunResources
) -> Side:
    """One side, in a warehouse that can fingerprint rows (asked up front, so that an
    engine that cannot fails before either table is read)."""
    side = Side(conn, table, resources)
    try:
        side.hash28("''")
    except ConfigError as exc:
        raise ConfigError(
            f"step '{step_id}' cannot be reconciled: its {role} is in {conn.kind}: {exc.message}",
            hint=exc.hint,
            code=exc.code,
        ) from None
    return side


def reconcile(
    source: Side, target: Side, key: list[str], columns: list[str], buckets: int = 1024
) -> Reconciliation:
    """Compare the two tables by count and hashed key ranges, then key by key where the
    ranges differ. ``columns`` are the ones compared (key included). Both sides run at
    the same time."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    ranges = _Ranges.plan(source, target, key, buckets)
    with ThreadPoolExecutor(2, thread_name_prefix="deltaflow-reconcile") as pool:
        left, right = pool.map(lambda side: ranges.summarise(side, columns), (source, target))
        differing = sorted(b for b in left.keys() | right.keys() if left.get(b) != right.get(b))
        result = Reconciliation(
            sum(n for n, _ in left.values()),
            sum(n for n, _ in right.values()),
            ranges.count,
            len(differing),
        )
        if differing:
            a, b = pool.map(lambda side: ranges.rows(side, columns, differing), (source, target))
            result.missing_in_target = sorted(set(a) - set(b))
            result.missing_in_source = sorted(set(b) - set(a))
            result.changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    result.seconds = round(time.monotonic() - started, 3)
    return result


@dataclass
class _Ranges:
    """How rows are put into ranges: by the value of a single integer key (so a range
    is read back through the key's index), else by a hash of the key."""

    key: list[str]
    count: int
    low: int | None = None  # integer key: the smallest key on either side
    width: int = 1

    @classmethod
    def plan(cls, source: Side, target: Side, key: list[str], buckets: int) -> _Ranges:
        import pyarrow as pa

        dtype = source.types.get(key[0]) if len(key) == 1 else None
        if dtype is None or not pa.types.is_integer(dtype):
            return cls(key, buckets)
        bounds = [
            side.run(
                f"SELECT min({side.quote(key[0])}) AS lo, max({side.quote(key[0])}) AS hi "
                f"FROM {side.target}"
            ).to_pylist()[0]
            for side in (source, target)
        ]
        lows = [b["lo"] for b in bounds if b["lo"] is not None]
        highs = [b["hi"] for b in bounds if b["hi"] is not None]
        if not lows:
            return cls(key, 1, 0, 1)
        low, high = min(lows), max(highs)
        width = max(1, -(-(high - low + 1) // buckets))
        return cls(key, -(-(high - low + 1) // width), low, width)

    def bucket(self, side: Side) -> str:
        if self.low is None:
            return f"({side.hash28(side.row_text(self.key))} % {self.count})"
        start = f"({side.quote(self.key[0])} - {self.low})"
        return side.warehouse.int_div_sql(start, str(self.width))

    def within(self, side: Side, wanted: list[int]) -> str:
        if self.low is None:
            return f"{self.bucket(side)} IN ({', '.join(str(b) for b in wanted)})"
        name = side.quote(self.key[0])
        spans = [
            f"{name} BETWEEN {self.low + b * self.width} AND {self.low + (b + 1) * self.width - 1}"
            for b in wanted
        ]
        return "(" + " OR ".join(spans) + ")"

    def summarise(self, side: Side, columns: list[str]) -> dict[int, tuple[int, int]]:
        sql = (
            f"SELECT b, count(*) AS n, sum(h) AS s FROM (SELECT {self.bucket(side)} AS b, "
            f"{side.hash28(side.row_text(columns))} AS h FROM {side.target}) AS r GROUP BY b"
        )
        return {int(r["b"]): (int(r["n"]), int(r["s"])) for r in side.run(sql).to_pylist()}

    def rows(self, side: Side, columns: list[str], wanted: list[int]) -> dict[str, str]:
        sql = (
            f"SELECT {side.row_text(self.key)} AS k, md5({side.row_text(columns)}) AS h "
            f"FROM {side.target} WHERE {self.within(side, wanted)}"
        )
        return {str(r["k"]): str(r["h"]) for r in side.run(sql).to_pylist()}


def record(
    result: Reconciliation,
    loaded: LoadedPipeline,
    step: SyncStep,
    source: Side,
    target: Side,
    run_date: dt.date,
    partition_column: str | None,
) -> dict[str, Any]:
    """The reconciliation record, in the Metrics framework's field names."""
    latest = {}
    for name, side in (("source", source), ("target", target)):
        value = None
        if partition_column:
            top = side.run(f"SELECT max({side.quote(partition_column)}) AS m FROM {side.target}")
            value = top.column(0)[0].as_py()
        latest[name] = None if value is None else str(value)[:10]
    sample = {
        "missing_in_target": result.missing_in_target[:20],
        "missing_in_source": result.missing_in_source[:20],
        "changed": result.changed[:20],
    }
    return {
        "module_id": "DELTAFLOW_RECONCILE",
        "module_type_nm": "Reconciliation",
        "source_server_nm": f"{step.all_sources[0].connection} ({source.kind})",
        "target_server_nm": f"{step.destination.connection} ({target.kind})",
        "rcncln_exact_pass_in": "Passed" if result.passed else "Failed",
        "latest_source_parttn_dt": latest["source"],
        "latest_target_parttn_dt": latest["target"],
        "load_ts": dt.datetime.now(dt.UTC),
        "schdld_dt": run_date,
        "source_system_id": source.table,
        "schdld_yr": run_date.year,
        "Job_Name": f"{loaded.pipeline.pipeline_id}/{step.step_id}",
        "source_row_cnt": result.source_rows,
        "target_row_cnt": result.target_rows,
        "differences": json.dumps(sample),
    }


def write_record(target: Side, row: dict[str, Any], table: str = RECON_TABLE) -> str:
    """Append the record to ``table`` in the target's warehouse (created when missing)."""
    from deltaflow.connectors import append_rows

    schema, _ = split_table(target.table, target.warehouse.default_schema)
    name = table if "." in table else f"{schema}.{table}"
    types = {"load_ts": "timestamp", "schdld_dt": "date", "schdld_yr": "int"}
    types |= {"source_row_cnt": "int", "target_row_cnt": "int"}
    append_rows(target.conn, target.resources, name, [row], types)
    return name
