"""The quarantine tables of a pipeline: list, show, purge and replay.

Each sync step's destination table ``T`` keeps its quarantined records in
``T__quarantine`` (see ``deltaflow.quarantine``). Replay reads them back as rows of the
table, runs them through the step as it is configured now (its row checks, then a load
with its write mode; rows that still fail are quarantined again, as new records) and
then deletes the records it replayed. A crash between the load and that delete leaves
the replayed records in place, so a second replay loads them again: use a merge (it
absorbs them by key) or check the table before replaying twice into an append.

The destinations that are warehouses (DuckDB, PostgreSQL, BigQuery) are managed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.config.models import SyncStep
from deltaflow.connectors import open_destination, open_warehouse
from deltaflow.connectors.protocol import RunResources, Warehouse, split_table
from deltaflow.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

    from deltaflow.config.connections import ConnectionBase
    from deltaflow.config.loader import LoadedPipeline


@dataclass
class Quarantine:
    """One step's quarantine table."""

    step: SyncStep
    conn: ConnectionBase
    table: str  # the destination table, as configured
    resources: RunResources
    warehouse: Warehouse

    def name(self) -> exp.Table:
        from sqlglot import exp

        schema, table = split_table(self.table, self.warehouse.default_schema)
        return exp.Table(
            this=exp.to_identifier(table + quarantine.SUFFIX, quoted=True),
            db=exp.to_identifier(schema, quoted=True),
        )

    def query(self, expression: exp.Expression) -> pa.Table:
        return self.warehouse.query(expression.sql(self.warehouse.dialect))

    def execute(self, expression: exp.Expression) -> None:
        self.warehouse.execute(expression.sql(self.warehouse.dialect))

    def exists(self) -> bool:
        from sqlglot import exp

        try:
            self.query(exp.select(exp.Star()).from_(self.name()).limit(0))
        except Exception:  # the table is made by the first quarantined record
            return False
        return True


def quarantines(loaded: LoadedPipeline, step_ids: list[str], run_id: str) -> list[Quarantine]:
    """The quarantine tables of the pipeline's sync steps (or of ``step_ids``)."""
    steps = [s for s in loaded.pipeline.steps if isinstance(s, SyncStep)]
    known = [s.step_id for s in steps]
    for name in step_ids:
        if name not in known:
            raise ConfigError(
                f"no sync step '{name}' in this pipeline.{did_you_mean(name, known)}",
                hint=f"sync steps: {', '.join(known)}",
            )
    out = []
    resources = RunResources(loaded.base_dir, run_id)
    for step in steps:
        if step_ids and step.step_id not in step_ids:
            continue
        conn = loaded.pipeline.connections[step.destination.connection]
        warehouse = _managed(conn, resources)
        if warehouse is not None and step.destination.table:
            out.append(Quarantine(step, conn, step.destination.table, resources, warehouse))
    return out


def _managed(conn: ConnectionBase, resources: RunResources) -> Warehouse | None:
    """The warehouse of a destination; None for one that is not a warehouse (its
    quarantine is not a table these commands manage)."""
    try:
        return open_warehouse(conn, resources)
    except ConfigError as exc:
        if exc.code == "CONFIG_NOT_A_WAREHOUSE":
            return None
        raise


def summary(q: Quarantine) -> list[dict[str, Any]]:
    """Records per reason code: how many, the oldest and the newest."""
    from sqlglot import exp

    if not q.exists():
        return []
    code = exp.column("reason_code")
    at = exp.column("quarantined_at")
    rows = q.query(
        exp.select(
            code,
            exp.func("COUNT", exp.Star()).as_("records"),
            exp.func("MIN", at).as_("oldest"),
            exp.func("MAX", at).as_("newest"),
        )
        .from_(q.name())
        .group_by(code)
        .order_by(code)
    )
    return [
        {k: str(v) if isinstance(v, dt.datetime) else v for k, v in r.items()}
        for r in rows.to_pylist()
    ]


def records(q: Quarantine, limit: int) -> list[dict[str, Any]]:
    from sqlglot import exp

    if not q.exists():
        return []
    rows = q.query(
        exp.select("run_id", "quarantined_at", "reason_code", "reason", "record")
        .from_(q.name())
        .order_by(exp.column("quarantined_at"))
        .limit(limit)
    )
    return rows.to_pylist()


def purge(q: Quarantine) -> int:
    """Delete every record; how many there were."""
    from sqlglot import exp

    if not q.exists():
        return 0
    count = q.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(q.name()))
    q.execute(exp.delete(q.name()).where(exp.true()))  # BigQuery wants a WHERE
    return int(count.column(0)[0].as_py())


def replay(q: Quarantine, loaded: LoadedPipeline) -> dict[str, int]:
    """Load the quarantined records through the step as configured now; delete the
    records replayed. Returns how many were replayed, loaded and quarantined again."""
    import pyarrow as pa
    from sqlglot import exp

    from deltaflow.quality.inflight import RowChecks

    if not q.exists():
        return {"replayed": 0, "loaded": 0, "quarantined": 0}
    held = q.query(exp.select("record", "quarantined_at").from_(q.name()))
    if held.num_rows == 0:
        return {"replayed": 0, "loaded": 0, "quarantined": 0}
    last: dt.datetime = max(t for t in held.column("quarantined_at").to_pylist() if t)
    destination = open_destination(q.conn, q.step.destination, q.resources)
    target = _table_schema(q)
    rows = _rows([json.loads(str(r)) for r in held.column("record").to_pylist()], target)
    checks = RowChecks(list(q.step.checks), q.resources.run_id, q.step.step_id)
    checks.prepare(target.names)
    batches = [checks.apply(b) for b in rows.to_batches()]
    from deltaflow.schema.types import TableSchema

    destination.prepare(TableSchema.from_arrow(target))
    reader = pa.RecordBatchReader.from_batches(target, iter(batches))
    keys = tuple(q.step.destination.primary_key)
    result = destination.load(reader, q.step.destination.write_mode, keys, rejected=checks.take)
    at = exp.column("quarantined_at")
    q.execute(
        exp.delete(q.name()).where(
            exp.LTE(
                this=at, expression=exp.cast(exp.Literal.string(last.isoformat()), "TIMESTAMPTZ")
            )
        )
    )
    q.resources.close()
    return {
        "replayed": held.num_rows,
        "loaded": result.rows_loaded,
        "quarantined": result.rows_quarantined,
    }


def _table_schema(q: Quarantine) -> pa.Schema:
    from sqlglot import exp

    schema, table = split_table(q.table, q.warehouse.default_schema)
    name = exp.Table(
        this=exp.to_identifier(table, quoted=True), db=exp.to_identifier(schema, quoted=True)
    )
    empty: pa.Table = q.query(exp.select(exp.Star()).from_(name).limit(0))
    return empty.schema


def _rows(records: list[dict[str, Any]], target: pa.Schema) -> pa.Table:
    """Records (as quarantined: JSON, dates and decimals as text) as rows of ``target``."""
    import pyarrow as pa

    columns = []
    for field in target:
        values = pa.array([r.get(field.name) for r in records])
        columns.append(values if values.type.equals(field.type) else values.cast(field.type))
    return pa.Table.from_arrays(columns, schema=target)
