"""Reconcile a sync step's source and destination tables, row by row, without moving them.

Both sides are compared by count, then by hashed ranges of the primary key: every row
is put in one of ``buckets`` ranges by a hash of its key and fingerprinted by the md5
of its values as text; each side returns one (rows, sum of fingerprints) per range,
computed where the table lives. Only the ranges that differ are read again, key by key,
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
import importlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deltaflow.config.models import SyncStep
from deltaflow.connectors.base import RunResources, split_table
from deltaflow.errors import ConfigError, did_you_mean
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import ConnectionBase
    from deltaflow.config.loader import LoadedPipeline

ENGINES = ("duckdb", "postgres")
SEPARATOR = "chr(31)"  # between values in a row's text: a control character, not in data
RECON_TABLE = "_deltaflow_reconciliation"


@dataclass
class Side:
    """One table in one warehouse."""

    conn: ConnectionBase
    table: str
    resources: RunResources
    types: dict[str, pa.DataType] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.conn.kind

    @property
    def target(self) -> str:
        schema, name = split_table(self.table, "main" if self.kind == "duckdb" else "public")
        return f"{quote_double(schema)}.{quote_double(name)}"

    def run(self, sql: str) -> pa.Table:
        module = importlib.import_module(f"deltaflow.connectors.{self.kind}")
        table: pa.Table = module.query(self.conn, self.resources, sql)
        return table

    def columns(self) -> list[str]:
        """The table's columns (their types kept for ``text``)."""
        schema = self.run(f"SELECT * FROM {self.target} LIMIT 0").schema
        self.types = {f.name: f.type for f in schema}
        return list(schema.names)

    def text(self, column: str) -> str:
        """A column's value as text, written the same by both engines (timestamps in UTC
        with microseconds); NULL as \\N."""
        import pyarrow as pa

        name, dtype = quote_double(column), self.types.get(column)
        if dtype is not None and pa.types.is_floating(dtype):
            cast = self._float(name)
        elif dtype is not None and pa.types.is_timestamp(dtype):
            utc = f"({name} AT TIME ZONE 'UTC')" if dtype.tz else name
            if self.kind == "duckdb":
                cast = f"strftime({utc}, '%Y-%m-%d %H:%M:%S.%f')"
            else:
                cast = f"to_char({utc}, 'YYYY-MM-DD HH24:MI:SS.US')"
        elif self.kind == "duckdb":
            cast = f"CAST({name} AS VARCHAR)"
        else:
            cast = f"{name}::text"
        return f"coalesce({cast}, '\\N')"

    def _float(self, name: str) -> str:
        """A float at 6 decimal places (the engines write floats differently: 334.0 and
        334, 2500000000000000.0 and 2.5e+15), NaN and infinities by name."""
        if self.kind == "duckdb":
            return (
                f"CASE WHEN isnan({name}) THEN 'NaN' WHEN isinf({name}) THEN "
                f"CASE WHEN {name} > 0 THEN 'Infinity' ELSE '-Infinity' END "
                f"ELSE CAST(CAST(round({name}, 6) AS DECIMAL(38, 6)) AS VARCHAR) END"
            )
        return (
            f"CASE WHEN {name} IN ('NaN', 'Infinity', '-Infinity') THEN {name}::text "
            f"ELSE round({name}::numeric, 6)::text END"
        )

    def row_text(self, columns: list[str]) -> str:
        return f"concat_ws({SEPARATOR}, {', '.join(self.text(c) for c in columns)})"

    def hash28(self, text: str) -> str:
        """The first 7 hex digits of md5(text) as a non-negative integer."""
        if self.kind == "duckdb":
            return f"CAST('0x' || substr(md5({text}), 1, 7) AS BIGINT)"
        return f"('x' || substr(md5({text}), 1, 7))::bit(28)::bigint"


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
        (source.table, source.connection, "source"),
        (destination.table, destination.connection, "destination"),
    ):
        conn = connections[conn_name]
        if conn.kind not in ENGINES or not spec_table or len(step.all_sources) > 1:
            raise ConfigError(
                f"step '{step_id}' cannot be reconciled: its {role} is not one table in "
                f"{' or '.join(ENGINES)}",
                hint="reconcile compares a DuckDB or PostgreSQL table with another",
            )
        pair.append(Side(conn, spec_table, resources))
    return step, pair[0], pair[1]


def reconcile(
    source: Side, target: Side, key: list[str], columns: list[str], buckets: int = 1024
) -> Reconciliation:
    """Compare the two tables by count and hashed key ranges, then key by key where the
    ranges differ. ``columns`` are the ones compared (key included)."""
    import time

    started = time.monotonic()
    left, right = _ranges(source, key, columns, buckets), _ranges(target, key, columns, buckets)
    differing = sorted(b for b in left.keys() | right.keys() if left.get(b) != right.get(b))
    result = Reconciliation(
        sum(n for n, _ in left.values()),
        sum(n for n, _ in right.values()),
        buckets,
        len(differing),
    )
    if differing:
        a, b = (
            _rows(source, key, columns, buckets, differing),
            _rows(target, key, columns, buckets, differing),
        )
        result.missing_in_target = sorted(set(a) - set(b))
        result.missing_in_source = sorted(set(b) - set(a))
        result.changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _bucket(side: Side, key: list[str], buckets: int) -> str:
    return f"({side.hash28(side.row_text(key))} % {buckets})"


def _ranges(
    side: Side, key: list[str], columns: list[str], buckets: int
) -> dict[int, tuple[int, int]]:
    sql = (
        f"SELECT b, count(*) AS n, sum(h) AS s FROM (SELECT {_bucket(side, key, buckets)} AS b, "
        f"{side.hash28(side.row_text(columns))} AS h FROM {side.target}) AS r GROUP BY b"
    )
    return {int(r["b"]): (int(r["n"]), int(r["s"])) for r in side.run(sql).to_pylist()}


def _rows(
    side: Side, key: list[str], columns: list[str], buckets: int, wanted: list[int]
) -> dict[str, str]:
    listed = ", ".join(str(b) for b in wanted)
    sql = (
        f"SELECT {side.row_text(key)} AS k, md5({side.row_text(columns)}) AS h "
        f"FROM {side.target} WHERE {_bucket(side, key, buckets)} IN ({listed})"
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
            top = side.run(f"SELECT max({quote_double(partition_column)}) AS m FROM {side.target}")
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
    import pyarrow as pa

    from deltaflow.config.models import DestinationSpec
    from deltaflow.connectors import open_destination
    from deltaflow.schema.types import TableSchema

    schema, _ = split_table(target.table, "main" if target.kind == "duckdb" else "public")
    name = table if "." in table else f"{schema}.{table}"
    types: dict[str, pa.DataType] = {
        "load_ts": pa.timestamp("us", tz="UTC"),
        "schdld_dt": pa.date32(),
        "schdld_yr": pa.int32(),
        "source_row_cnt": pa.int64(),
        "target_row_cnt": pa.int64(),
    }
    fields = [pa.field(k, types.get(k, pa.string())) for k in row]
    data = pa.Table.from_pylist([row], schema=pa.schema(fields))
    spec = DestinationSpec(connection="target", table=name, write_mode="append")
    destination = open_destination(target.conn, spec, target.resources)
    destination.prepare(TableSchema.from_arrow(data.schema))
    destination.load(
        pa.RecordBatchReader.from_batches(data.schema, data.to_batches()), "append", ()
    )
    return name
