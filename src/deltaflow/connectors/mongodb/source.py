"""The MongoDB source: sample and infer, plan ``_id`` splits, read batches.

A source reads one collection (``filter``, ``projection``, ``sort``) or the result of an
aggregation ``pipeline``; a cursor window is pushed down into the filter. Documents that
a column cannot hold are kept for quarantine (``take_rejected``), never dropped.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.connectors.mongodb.client import client, driver_error
from deltaflow.connectors.mongodb.columns import as_json
from deltaflow.connectors.mongodb.convert import gc_paused, to_batch
from deltaflow.connectors.mongodb.inference import Inference, infer_schema
from deltaflow.connectors.mongodb.kinds import load_kinds
from deltaflow.connectors.protocol import Split
from deltaflow.errors import SchemaError, SourceError
from deltaflow.schema.types import TableSchema, parse_type

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import MongoDBConnection
    from deltaflow.config.sources import MongoSource
    from deltaflow.connectors.protocol import CursorWindow, RunResources

log = logging.getLogger("deltaflow.mongodb")

#: documents per split below which a collection is read as one split
MIN_SPLIT_DOCUMENTS = 50_000


class MongoDBSource:
    """One collection, or an aggregation's result, as Arrow batches."""

    def __init__(
        self,
        conn: MongoDBConnection,
        spec: MongoSource,
        resources: RunResources,
        batch_size: int,
        parallelism: int,
    ):
        self.conn = conn
        self.spec = spec
        self.resources = resources
        self.batch_size = batch_size
        self.parallelism = max(1, spec.splits or parallelism)
        self.name = spec.stream or spec.collection
        self.schema: TableSchema | None = None
        self.window: CursorWindow | None = None
        self.lock = threading.Lock()
        self.rejected: list[tuple[dict[str, Any], str]] = []

    @property
    def collection(self) -> Any:
        return client(self.conn, self.resources)[self.conn.database][self.spec.collection]

    def restrict(self, window: CursorWindow) -> None:
        """Read only the documents of this cursor window (and those without a cursor)."""
        self.window = window

    def _filter(self) -> dict[str, Any]:
        from bson import json_util

        conditions: list[dict[str, Any]] = []
        if self.spec.filter:
            conditions.append(json_util.loads(json_util.dumps(self.spec.filter)))
        if self.window is not None:
            import bson

            as_bson = bson.ObjectId if self.window.cursor_type == "objectid" else (lambda v: v)
            bounds = {}
            if self.window.start is not None:
                bounds["$gte"] = as_bson(self.window.start)
            if self.window.end is not None:
                bounds["$lt"] = as_bson(self.window.end)
            if bounds:
                cursor = self.window.cursor
                conditions.append({"$or": [{cursor: bounds}, {cursor: None}]})
        if not conditions:
            return {}
        return conditions[0] if len(conditions) == 1 else {"$and": conditions}

    def _pipeline(self, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from bson import json_util

        assert self.spec.pipeline is not None
        stages: list[dict[str, Any]] = json_util.loads(json_util.dumps(self.spec.pipeline))
        where = self._filter()
        return ([{"$match": where}] if where and self.window else []) + stages + extra

    def _sample(self) -> list[dict[str, Any]]:
        """Up to ``sample_size`` documents: half from the start of the collection, half
        from its end (by ``_id``), so a field whose type changes over time shows both."""
        size = self.spec.sample_size
        if self.spec.pipeline is not None:
            return list(self.collection.aggregate(self._pipeline([{"$limit": size}])))
        where, projection = self._filter(), self.spec.projection
        first = list(self.collection.find(where, projection).sort("_id", 1).limit(size // 2 or 1))
        last = list(self.collection.find(where, projection).sort("_id", -1).limit(size // 2))
        seen = {d.get("_id") for d in first}
        return first + [d for d in reversed(last) if d.get("_id") not in seen]

    def discover(self) -> TableSchema:
        load_kinds()
        declared = {}
        for path, text in self.spec.schema_.items():
            try:
                declared[path] = parse_type(text)
            except ValueError as exc:
                raise SchemaError(f"schema.{path}: {exc}", hint="fix the declared type") from None
        how = Inference(self.spec.max_nesting, self.spec.on_conflict, declared)
        try:
            sample = self._sample()
        except Exception as exc:
            raise driver_error(exc, self.name) from exc
        self.schema = infer_schema(sample, how)
        if not self.schema.columns:
            raise SchemaError(
                f"MongoDB collection {self.name} has no documents to infer a schema from",
                hint="check the collection and the filter, or declare the fields in 'schema'",
            )
        log.info("%s: schema from %d sampled documents: %s", self.name, len(sample), self.schema)
        return self.schema

    def splits(self) -> list[Split]:
        """``_id`` ranges of about equal size, found by skipping through the index."""
        if self.spec.pipeline is not None or self.spec.sort or self.parallelism == 1:
            return [Split(0)]
        try:
            where = self._filter()
            total = (
                self.collection.count_documents(where)
                if where
                else (self.collection.estimated_document_count())
            )
            if self.spec.splits:  # asked for: as many as there are documents for
                parts = max(1, min(self.spec.splits, total))
            else:
                parts = min(self.parallelism, max(1, total // MIN_SPLIT_DOCUMENTS))
            if parts == 1:
                return [Split(0, {}, total)]
            bounds: list[Any] = [None]
            for n in range(1, parts):
                found = list(
                    self.collection.find(where, {"_id": 1})
                    .sort("_id", 1)
                    .skip(n * total // parts)
                    .limit(1)
                )
                if found:
                    bounds.append(found[0]["_id"])
            bounds.append(None)
        except Exception as exc:
            raise driver_error(exc, self.name) from exc
        log.info(
            "%s: %d splits by _id from %s",
            self.name,
            len(bounds) - 1,
            " and ".join(str(b) for b in bounds[1:-1]),
        )
        return [
            Split(i, {"from": low, "to": high}, total // parts)
            for i, (low, high) in enumerate(itertools.pairwise(bounds))
        ]

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        assert self.schema is not None, "discover() first"
        try:
            cursor = self._cursor(split)
            while True:
                with gc_paused():  # not across the yield
                    documents = list(itertools.islice(cursor, self.batch_size))
                    batch = self._convert(documents) if documents else None
                if batch is None:
                    return
                yield batch
        except Exception as exc:
            if isinstance(exc, (SourceError, SchemaError)):
                raise
            raise driver_error(exc, self.name) from exc

    def _cursor(self, split: Split) -> Any:
        if self.spec.pipeline is not None:
            return self.collection.aggregate(self._pipeline([]), batchSize=self.batch_size)
        where = self._filter()
        low, high = split.params.get("from"), split.params.get("to")
        if low is not None or high is not None:
            ids = {"$gte": low} if low is not None else {}
            if high is not None:
                ids["$lt"] = high
            where = {"$and": [where, {"_id": ids}]} if where else {"_id": ids}
        cursor = self.collection.find(where, self.spec.projection, batch_size=self.batch_size)
        if self.spec.sort:
            cursor = cursor.sort(list(self.spec.sort.items()))
        return cursor

    def _convert(self, documents: list[dict[str, Any]]) -> pa.RecordBatch:
        assert self.schema is not None
        converted = to_batch(documents, self.schema)
        if converted.rejected:
            with self.lock:
                self.rejected.extend(converted.rejected)
        return converted.batch

    def take_rejected(self, run_id: str) -> pa.Table | None:
        """Quarantine records of the documents left out so far (and forget them)."""
        with self.lock:
            rejected, self.rejected = self.rejected, []
        if not rejected:
            return None
        log.warning(
            "%s: %d documents could not be converted; they go to quarantine (first: %s)",
            self.name,
            len(rejected),
            rejected[0][1],
        )
        return quarantine.from_json(
            [as_json(document) or "{}" for document, _ in rejected],
            [reason for _, reason in rejected],
            "MONGODB_CONVERSION",
            run_id=run_id,
            stream=self.name,
        )
