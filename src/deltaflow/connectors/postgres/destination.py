"""Loading Arrow batches into a PostgreSQL table, one transaction per load.

Loads use binary COPY (ADBC bulk ingest). ``append`` and ``replace`` (which truncates
first; readers wait for the commit and then see the new rows) COPY straight into the
target when every column's Arrow type has the binary form of the target column's type
(``ingest.copies_into``); otherwise, and always for ``merge``, the batches go to a
temporary staging table and are cast into the target, ``merge`` inserting with
``ON CONFLICT (primary key) DO UPDATE``. Every identifier is quoted.

The table's schema evolves as ``destination.on_schema_change`` says (see
``deltaflow.schema.evolution``); the incremental state lives next to the table
(``deltaflow.connectors._sql.state``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.connectors._common import alter_sql, check_merge_keys, quoted, relay_failures
from deltaflow.connectors._sql.state import STATE_TABLE, StateSQL, StateTable
from deltaflow.connectors.postgres.catalog import PgColumn, describe
from deltaflow.connectors.postgres.client import connect, fetch, lost, qualified
from deltaflow.connectors.postgres.ingest import copies_into, ingestable, jsonb_binary
from deltaflow.connectors.postgres.types import evolution
from deltaflow.connectors.protocol import LoadResult, StateRecord
from deltaflow.errors import ConnectionLostError, LoadError, SchemaError
from deltaflow.faults import crash_point
from deltaflow.schema.evolution import plan_changes
from deltaflow.schema.mappings import postgres_type, quote_double
from deltaflow.schema.types import Column, LogicalType, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import PostgresConnection, WriteMode
    from deltaflow.config.models import DestinationSpec, IndexSpec

log = logging.getLogger("deltaflow.postgres")

STAGING_PREFIX = "__deltaflow_"

#: PostgreSQL's state-table SQL: a delete counts its rows with RETURNING
STATE_SQL = StateSQL(
    delete=(
        "WITH gone AS (DELETE FROM {table} WHERE starts_with(state_key, {prefix}) "
        "RETURNING 1) SELECT count(*) FROM gone",
    )
)


class CursorSession:
    """An ADBC cursor as the state table's ``Session``."""

    def __init__(self, cursor: Any):
        self.cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if params:
            self.cursor.execute(sql, list(params))
        else:
            self.cursor.execute(sql)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return fetch(self.cursor, sql, tuple(params))

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.rows(sql, params)[0][0]

    def arrow(self, sql: str) -> pa.Table:
        self.cursor.execute(sql)
        table: pa.Table = self.cursor.fetch_arrow_table()
        return table


class PostgresDestination(StateTable[CursorSession]):
    """One table of a PostgreSQL database, each operation on a connection of its own."""

    state_sql = STATE_SQL

    def __init__(self, conn: PostgresConnection, spec: DestinationSpec):
        assert spec.table is not None
        self.conn = conn
        self.spec = spec
        self.schema_name, self.table = qualified(spec.table)
        self.name = spec.table
        self.target = quoted(self.schema_name, self.table)
        self.columns: dict[str, PgColumn] = {}
        self.primary_key: tuple[str, ...] = ()

    def pg_type(self, logical: LogicalType) -> str:
        if self.spec.nested == "json" and logical.kind == "list":
            return "jsonb"
        return postgres_type(logical)

    def prepare(self, schema: TableSchema) -> None:
        """Create the table (with primary key and indexes), or evolve it to the schema."""
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if self.spec.drop_existing:
                    cur.execute(f"DROP TABLE IF EXISTS {self.target}")
                columns, _keys = describe(cur, self.schema_name, self.table)
                if columns:
                    self._evolve(cur, {c.name: c for c in columns}, schema)
                else:
                    self._create(cur, schema)
                db.commit()
            except BaseException:
                db.rollback()
                raise
            columns, self.primary_key = describe(cur, self.schema_name, self.table)
            db.rollback()
        self.columns = {c.name: c for c in columns}

    def _create(self, cur: Any, schema: TableSchema) -> None:
        keys = tuple(self.spec.primary_key) or schema.primary_key
        definitions = [
            f"{quote_double(c.name)} {self.pg_type(c.type)}"
            + (" NOT NULL" if c.name in keys else "")
            for c in schema.columns
        ]
        if keys:
            definitions.append(f"PRIMARY KEY ({', '.join(quote_double(k) for k in keys)})")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_double(self.schema_name)}")
        cur.execute(f"CREATE TABLE {self.target} ({', '.join(definitions)})")
        for index in self.spec.indexes:
            cur.execute(self._index_sql(index))

    def _index_sql(self, index: IndexSpec) -> str:
        name = index.name or f"{self.table}_{'_'.join(index.columns)}_idx"[:63]
        unique = "UNIQUE " if index.unique else ""
        columns = ", ".join(quote_double(c) for c in index.columns)
        return (
            f"CREATE {unique}INDEX IF NOT EXISTS {quote_double(name)} ON {self.target} "
            f"USING {index.using} ({columns})"
        )

    def _evolve(self, cur: Any, existing: dict[str, PgColumn], schema: TableSchema) -> None:
        policy = self.spec.on_schema_change
        for change in plan_changes(self.name, existing, schema, policy, evolution(self.pg_type)):
            cur.execute(alter_sql(self.target, change))

    def load(
        self,
        batches: pa.RecordBatchReader,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
        state: Callable[[], list[StateRecord]] | None = None,
        rejected: Callable[[], pa.Table | None] | None = None,
    ) -> LoadResult:
        upstream: list[BaseException] = []
        batches_in = relay_failures(ingestable(batches), upstream)
        direct = write_mode != "merge" and all(
            field.name in self.columns and copies_into(field.type, self.columns[field.name])
            for field in batches_in.schema
        )
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            try:
                if direct:
                    log.debug("COPY straight into %s", self.name)
                    details = self._copy(cur, batches_in, write_mode)
                else:
                    details = self._stage_and_apply(cur, batches_in, write_mode, primary_key)
                ((count,),) = fetch(cur, f"SELECT count(*) FROM {self.target}")
                for record in state() if state else []:
                    self._put_state(CursorSession(cur), record)
                held = rejected() if rejected else None
                if held is not None:
                    cur.adbc_ingest(
                        f"{self.table}{quarantine.SUFFIX}",
                        held,
                        mode="create_append",
                        db_schema_name=self.schema_name,
                    )
                crash_point("after_load_before_commit")
                db.commit()
                crash_point("after_commit")
            except BaseException as exc:
                with contextlib.suppress(Exception):  # a lost connection cannot roll back
                    db.rollback()
                if upstream:
                    raise upstream[0] from None
                if isinstance(exc, (LoadError, SchemaError)):
                    raise
                if isinstance(exc, Exception) and lost(exc):
                    raise ConnectionLostError(
                        f"loading into PostgreSQL table {self.name} failed: the connection "
                        f"was lost: {exc}",
                        hint="nothing of this load was committed; run the step again",
                    ) from exc
                if isinstance(exc, Exception):
                    raise LoadError(
                        f"loading into PostgreSQL table {self.name} failed: {exc}",
                        hint="check that the source columns fit the table's types",
                    ) from exc
                raise
        rows = details.pop("rows_loaded")
        if held is None:
            return LoadResult(rows, int(count), details)
        where = {"quarantine_table": f"{self.schema_name}.{self.table}{quarantine.SUFFIX}"}
        return LoadResult(rows, int(count), details | where, held.num_rows)

    def _copy(self, cur: Any, batches: pa.RecordBatchReader, mode: WriteMode) -> dict[str, int]:
        """COPY the batches straight into the target (see ``ingest.copies_into``)."""
        if mode == "replace":
            cur.execute(f"TRUNCATE {self.target}")
        jsonb = [f.name for f in batches.schema if self.columns[f.name].pg_type == "jsonb"]
        loaded = cur.adbc_ingest(
            self.table,
            jsonb_binary(batches, jsonb),
            mode="append",
            db_schema_name=self.schema_name,
        )
        return {"rows_loaded": int(loaded)}

    def _stage_and_apply(
        self,
        cur: Any,
        batches: pa.RecordBatchReader,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
    ) -> dict[str, int]:
        """COPY the batches into a temporary table, then cast them into the target."""
        incoming = TableSchema.from_arrow(batches.schema)
        staging = f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        log.debug("COPY into staging table %s for %s", staging, self.name)
        cur.adbc_ingest(staging, batches, mode="create", temporary=True)
        ((staged,),) = fetch(cur, f"SELECT count(*) FROM {quote_double(staging)}")
        names = [c.name for c in incoming.columns if c.name in self.columns]
        target_cols = ", ".join(quote_double(n) for n in names)
        values = ", ".join(self._cast(c) for c in incoming.columns if c.name in self.columns)
        source = f"SELECT {values} FROM {quote_double(staging)} AS s"
        if write_mode == "replace":
            cur.execute(f"TRUNCATE {self.target}")
        if write_mode != "merge":
            cur.execute(f"INSERT INTO {self.target} ({target_cols}) {source}")
            return {"rows_loaded": int(staged)}
        return {
            "rows_loaded": int(staged),
            **self._merge(cur, staging, names, target_cols, values, primary_key),
        }

    def _merge(
        self,
        cur: Any,
        staging: str,
        names: list[str],
        target_cols: str,
        values: str,
        primary_key: tuple[str, ...],
    ) -> dict[str, int]:
        check_merge_keys(
            self.name,
            primary_key,
            lambda where: int(
                fetch(cur, f"SELECT count(*) FROM {quote_double(staging)} WHERE {where}")[0][0]
            ),
        )
        keys = ", ".join(quote_double(k) for k in primary_key)
        # the last row of each key wins: ctid follows the staging table's insertion order
        latest = (
            f"SELECT DISTINCT ON ({keys}) {values} FROM {quote_double(staging)} AS s "
            f"ORDER BY {keys}, s.ctid DESC"
        )
        if tuple(self.primary_key) == tuple(primary_key):
            updates = ", ".join(
                f"{quote_double(n)} = EXCLUDED.{quote_double(n)}"
                for n in names
                if n not in primary_key
            )
            action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            sql = (
                f"WITH applied AS (INSERT INTO {self.target} ({target_cols}) {latest} "
                f"ON CONFLICT ({keys}) {action} RETURNING (xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
                "FROM applied"
            )
            ((inserted, updated),) = fetch(cur, sql)
        else:  # no matching unique key on the table: delete the keys, then insert
            match = " AND ".join(f"t.{quote_double(k)} = s.{quote_double(k)}" for k in primary_key)
            removed = ", ".join(f"t.{quote_double(k)}" for k in primary_key)
            # updated counts keys, not rows: the table may repeat a key it has no index for
            ((updated,),) = fetch(
                cur,
                f"WITH gone AS (DELETE FROM {self.target} AS t USING {quote_double(staging)} "
                f"AS s WHERE {match} RETURNING {removed}) "
                "SELECT count(*) FROM (SELECT DISTINCT * FROM gone) AS keys",
            )
            cur.execute(f"INSERT INTO {self.target} ({target_cols}) {latest}")
            ((total,),) = fetch(
                cur, f"SELECT count(DISTINCT ({keys})) FROM {quote_double(staging)}"
            )
            inserted = int(total) - int(updated)
        return {"inserted": int(inserted), "updated": int(updated)}

    def _cast(self, column: Column) -> str:
        """The staged column converted to the target column's type."""
        target = self.columns[column.name].pg_type
        expr = f"s.{quote_double(column.name)}"
        if target in ("jsonb", "json") and column.type.kind == "list":
            return f"to_jsonb({expr})::{target}"
        return f"{expr}::{target}"

    # The state table's hooks (see StateTable).

    @contextmanager
    def _session(self, write: bool) -> Iterator[CursorSession]:
        with closing(connect(self.conn)) as db, closing(db.cursor()) as cur:
            if write:
                yield CursorSession(cur)
                db.commit()
                return
            try:
                yield CursorSession(cur)
            finally:
                db.rollback()

    def _state_table(self) -> str:
        return quoted(self.schema_name, STATE_TABLE)

    def _has_state_table(self, session: CursorSession) -> bool:
        found = session.value(
            "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
            [self.schema_name, STATE_TABLE],
        )
        return bool(found)

    def _column_names(self, session: CursorSession) -> Collection[str]:
        columns, _ = describe(session.cursor, self.schema_name, self.table)
        return [c.name for c in columns]
