"""MongoDB as a source, through pymongo.

A source reads one collection (``filter``, ``projection``, ``sort``) or the result of an
aggregation ``pipeline``. Its schema is inferred from a sample (``infer_schema``): the
union of the BSON types seen at each field path, mapped by
``deltaflow.schema.mappings.MONGODB_LOGICAL``. Documents are decoded by pymongo's C
extension and turned into Arrow 512 at a time (``to_batch``): the plain columns in one
struct conversion, the others column by column, value by value only for a column that
needs it. A document that a column cannot hold, or that has a field the schema does not
know, goes to quarantine with its ``_id`` and the reason; it is never dropped.

An unsorted collection read is cut into ``_id`` ranges at plan time, read in parallel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import itertools
import logging
import operator
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.connectors.protocol import RunResources, Split
from deltaflow.errors import ConnectionFailedError, SchemaError, SourceError
from deltaflow.schema.mappings import MONGODB_LOGICAL
from deltaflow.schema.types import Column, LogicalType, TableSchema, parse_type

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import MongoDBConnection
    from deltaflow.config.models import SourceSpec
    from deltaflow.connectors.protocol import CursorWindow

log = logging.getLogger("deltaflow.mongodb")

#: documents per split below which a collection is read as one split
MIN_SPLIT_DOCUMENTS = 50_000
NUMERIC = frozenset({"int", "long", "double"})


def client(conn: MongoDBConnection, resources: RunResources) -> Any:
    """The run's MongoClient for this connection, made once (it pools its sockets)."""
    import hashlib

    uri = conn.uri.get_secret_value()
    key = "mongodb:" + hashlib.sha256(uri.encode()).hexdigest()[:16]
    if key not in resources.handles:
        import pymongo

        made: Any = pymongo.MongoClient(
            uri,
            readPreference=conn.read_preference,
            serverSelectionTimeoutMS=int(conn.server_selection_timeout * 1000),
            socketTimeoutMS=int(conn.socket_timeout * 1000),
            # BSON dates are UTC instants: naive datetimes decode faster and pyarrow
            # takes them as UTC without asking a tzinfo object for each value
            tz_aware=False,
            appname="deltaflow",
        )
        resources.handles[key] = made
        resources.closers.append(made.close)
    return resources.handles[key]


# --------------------------------------------------------------------------- BSON kinds


def bson_kind(value: Any) -> str:
    """The BSON type of a decoded value, by its ``$type`` alias."""
    import uuid

    import bson

    if value is None:
        return "null"
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, bson.Int64):
        return "long"
    if isinstance(value, int):
        return "int"
    if isinstance(value, bson.Binary):
        return "uuid" if value.subtype in (3, 4) else "binData"
    if isinstance(value, bson.Code):
        return "javascript"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, uuid.UUID):
        return "uuid"
    if isinstance(value, (bson.Regex, re.Pattern)):
        return "regex"
    return _OTHER_KINDS.get(type(value).__name__, "unknown")


def _kinds() -> dict[type, str]:
    import bson
    from bson.decimal128 import Decimal128

    return {
        str: "string",
        float: "double",
        bool: "bool",
        int: "int",
        bson.Int64: "long",
        bson.ObjectId: "objectId",
        dt.datetime: "date",
        Decimal128: "decimal",
        bytes: "binData",
        dict: "object",
        list: "array",
        bson.Timestamp: "timestamp",
    }


_KINDS: dict[type, str] = {}
_OTHER_KINDS = {"MinKey": "minKey", "MaxKey": "maxKey", "DBRef": "object", "SON": "object"}


# --------------------------------------------------------------------------- inference


@dataclass
class _Node:
    """What the sample holds at one field path."""

    kinds: set[str] = field(default_factory=set)
    children: dict[str, _Node] = field(default_factory=dict)
    items: _Node | None = None

    def observe(self, value: Any) -> None:
        kind = bson_kind(value)
        self.kinds.add(kind)
        if kind == "object":
            for key, child in value.items():
                self.children.setdefault(key, _Node()).observe(child)
        elif kind == "array":
            self.items = self.items or _Node()
            for item in value:
                self.items.observe(item)


@dataclass(frozen=True)
class Inference:
    max_nesting: int = 3
    on_conflict: str = "json"
    declared: dict[str, LogicalType] = field(default_factory=dict)


def infer_schema(documents: list[dict[str, Any]], how: Inference) -> TableSchema:
    """The schema of these documents: the union of the types at each path (see the
    module and the README for the rules). ``_id`` comes first and is the key."""
    root = _Node()
    for document in documents:
        root.observe(document)
    names = sorted(root.children, key=lambda n: (n != "_id", n))
    names += [n for n in how.declared if "." not in n and n not in root.children]
    columns = tuple(
        Column(name, _resolve(root.children.get(name, _Node()), name, 1, how), name != "_id")
        for name in names
    )
    return TableSchema(columns, ("_id",) if "_id" in root.children else ())


def _resolve(node: _Node, path: str, depth: int, how: Inference) -> LogicalType:
    if path in how.declared:
        return how.declared[path]
    kinds = node.kinds - {"null"}
    if not kinds:
        log.info("field %s is null or missing in every sampled document: read as JSON", path)
        return LogicalType("json")
    if kinds <= {"int", "long"}:
        return LogicalType("int64")
    if kinds <= NUMERIC:
        log.info("field %s holds integers and doubles: read as float64", path)
        return LogicalType("float64")
    if len(kinds) > 1:
        log.warning(
            "field %s has the types %s in the sample: read as %s",
            path,
            ", ".join(sorted(kinds)),
            how.on_conflict,
        )
        return LogicalType("json" if how.on_conflict == "json" else "string")
    (kind,) = kinds
    if kind == "object":
        if depth > how.max_nesting or not node.children:
            return LogicalType("json")
        return LogicalType(
            "struct",
            fields=tuple(
                Column(k, _resolve(child, f"{path}.{k}", depth + 1, how))
                for k, child in sorted(node.children.items())
            ),
        )
    if kind == "array":
        items = node.items
        if items is None or not items.kinds - {"null"}:
            return LogicalType("json")
        item = _resolve(items, f"{path}[]", depth, how)
        if item.kind == "json" and len(items.kinds - {"null"}) > 1:
            log.info("field %s is an array of mixed types: read as JSON", path)
            return LogicalType("json")
        return LogicalType("list", item=item)
    return MONGODB_LOGICAL.get(kind, LogicalType("json"))


# --------------------------------------------------------------------------- BSON -> Arrow

#: documents converted together on the fast path: few enough that the documents the field
#: checks have just walked are still in the CPU cache when pyarrow converts them (on the
#: nested benchmark shape 512 converts ~1.5x faster than 65,536 at once)
SLICE = 512
NESTED = ("struct", "list")
#: kinds pyarrow takes as pymongo decodes them (ObjectId, Decimal128, UUID ... are not)
DIRECT_KINDS = frozenset({"int64", "float64", "boolean", "string", "timestamp", "binary"})


@dataclass
class Converted:
    batch: pa.RecordBatch
    rejected: list[tuple[dict[str, Any], str]]
    """Documents left out, each with the reason."""


def to_batch(documents: list[dict[str, Any]], schema: TableSchema) -> Converted:
    """The documents as one record batch of ``schema``; documents a column cannot hold,
    or with fields the schema does not know, are left out with the reason.

    The work goes slice by slice (``SLICE`` documents), so that every pass over a
    document finds it in the CPU cache. In a slice, the columns of plain kinds are
    converted together, in one struct conversion after a check that no document holds a
    field the schema does not know (pyarrow would drop it without a word); a slice that
    fails either is converted column by column, which finds the documents and their
    reasons. The other columns (ObjectId, Decimal128, JSON, ...) go column by column."""
    with gc_paused():
        return _to_batch(documents, schema)


def _to_batch(documents: list[dict[str, Any]], schema: TableSchema) -> Converted:
    import pyarrow as pa

    while True:  # again from the start when a column moves off the struct conversion
        plan = _plan(schema)
        slices: list[pa.RecordBatch] = []
        failures: dict[int, str] = {}
        for start in range(0, len(documents), SLICE):
            batch, bad, moved = plan.convert(documents[start : start + SLICE])
            if moved:
                _demote(schema, moved)
                break
            slices.append(batch)
            for i, reason in bad:
                failures.setdefault(start + i, reason)
        else:
            break
    if not slices:
        return Converted(pa.RecordBatch.from_pylist([], schema=plan.target), [])
    batch = pa.concat_batches(slices)  # type: ignore[attr-defined]
    if not failures:
        return Converted(batch, [])
    keep = pa.array([i not in failures for i in range(len(documents))])
    rejected = [(documents[i], reason) for i, reason in sorted(failures.items())]
    return Converted(batch.filter(keep), rejected)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Cyclic garbage collection held off while a batch of documents is decoded and
    converted. Decoded documents hold no reference cycles (reference counting frees
    them); a collection in the middle only walks the whole batch again, which cost the
    nested benchmark shape ~15 % of its conversion time and decoding several times over.
    Readers in several threads pause together: the first saves the state, the last one
    out restores it."""
    global _GC_PAUSES, _GC_WAS_ENABLED
    with _GC_LOCK:
        if _GC_PAUSES == 0:
            _GC_WAS_ENABLED = gc.isenabled()
            gc.disable()
        _GC_PAUSES += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_PAUSES -= 1
            if _GC_PAUSES == 0 and _GC_WAS_ENABLED:
                gc.enable()


_GC_LOCK = threading.Lock()
_GC_PAUSES = 0
_GC_WAS_ENABLED = True


class _Plan:
    """How ``to_batch`` converts the documents of one schema: which columns go through
    the one struct conversion (``direct``) and which column by column (``other``)."""

    def __init__(self, schema: TableSchema, slow: frozenset[str] = frozenset()):
        import pyarrow as pa

        self.schema = schema
        self.target = schema.to_arrow()
        direct, other = [], []
        for column, wanted in zip(schema.columns, self.target, strict=True):
            if column.name in slow or not _direct(column.type) or column.name == "_id":
                other.append((column, wanted.type))
            else:
                direct.append((column, wanted))
        self.slow = slow | {c.name for c, _ in other}
        self.direct = tuple(c for c, _ in direct)
        self.struct = pa.struct([f for _, f in direct])
        self.other = tuple(other)
        self.known = frozenset(schema.names)
        self.nested = tuple(c for c in self.direct if c.type.kind in NESTED)

    def convert(
        self, part: list[dict[str, Any]]
    ) -> tuple[pa.RecordBatch, list[tuple[int, str]], set[str]]:
        """One slice as a record batch (NULL where a document does not fit), the
        documents that do not fit with the reason, and the direct columns that need their
        values made plain first (when there are any, the batch is not to be used)."""
        import pyarrow as pa

        bad: list[tuple[int, str]] = []
        moved: set[str] = set()
        direct = self.fast(part)
        if direct is None:
            direct, bad, moved = self.by_column(part)
            if moved:
                return pa.RecordBatch.from_pylist([], schema=self.target), [], moved
        arrays = {c.name: direct.field(i) for i, c in enumerate(self.direct)}
        for column, wanted in self.other:
            values = list(map(dict.get, part, itertools.repeat(column.name)))
            array = _object_ids(values) if column.type.kind == "string" else None
            if array is None:
                array, found, _ = column_array(values, column.type, wanted, column.name)
                bad += found
            arrays[column.name] = array
        columns = [arrays[n] for n in self.schema.names]
        return pa.RecordBatch.from_arrays(columns, schema=self.target), bad, moved

    def fast(self, part: list[dict[str, Any]]) -> pa.StructArray | None:
        """The direct columns of these documents, or None when a document has a field
        the schema does not know or a value pyarrow refuses."""
        import pyarrow as pa

        try:
            if not all(map(self.known.issuperset, part)) or not all(
                _fits(map(dict.get, part, itertools.repeat(c.name)), c.type) for c in self.nested
            ):
                return None
            converted: pa.StructArray = pa.array(part, self.struct)  # type: ignore[assignment]
            return converted
        except _arrow_errors():
            return None

    def by_column(
        self, part: list[dict[str, Any]]
    ) -> tuple[pa.StructArray, list[tuple[int, str]], set[str]]:
        """The direct columns one by one, with the documents that do not fit, and the
        columns whose values had to be made plain first (ObjectIds in a string column,
        ...): those belong with the other columns."""
        import pyarrow as pa

        bad = self.unknown_fields(part)
        arrays, moved = [], set()
        for column, wanted in zip(self.direct, self.struct, strict=True):
            values = [d.get(column.name) for d in part]
            array, found, as_is = column_array(values, column.type, wanted.type, column.name)
            if not as_is and not found:
                moved.add(column.name)
            bad += found
            arrays.append(array)
        if not arrays:
            return pa.array(part, self.struct), bad, moved  # type: ignore[return-value]
        return pa.StructArray.from_arrays(arrays, fields=list(self.struct)), bad, moved

    def unknown_fields(self, part: list[dict[str, Any]]) -> list[tuple[int, str]]:
        """(position, reason) of the documents with top-level fields the schema lacks."""
        bad = []
        for i, document in enumerate(part):
            if not self.known.issuperset(document):
                extra = ", ".join(sorted(set(document) - self.known))
                bad.append((i, f"fields {extra} are not in the schema inferred from the sample"))
        return bad


_PLANS: dict[TableSchema, _Plan] = {}


_PLANS_LOCK = threading.Lock()


def _plan(schema: TableSchema) -> _Plan:
    with _PLANS_LOCK:
        plan = _PLANS.get(schema)
        if plan is None:
            if len(_PLANS) >= 64:  # a long-lived process meets many schemas: keep a few
                _PLANS.clear()
            plan = _PLANS[schema] = _Plan(schema)
        return plan


def _demote(schema: TableSchema, columns: set[str]) -> None:
    """Convert these columns column by column from now on (merged with what other
    readers of the schema found)."""
    with _PLANS_LOCK:
        current = _PLANS.get(schema)
        slow = current.slow if current is not None else frozenset()
        _PLANS[schema] = _Plan(schema, slow | columns)


def _direct(logical: LogicalType) -> bool:
    if logical.kind == "struct":
        return all(_direct(c.type) for c in logical.fields)
    if logical.kind == "list":
        return logical.item is not None and _direct(logical.item)
    return logical.kind in DIRECT_KINDS


def _fits(values: Iterable[Any], logical: LogicalType) -> bool:
    """Whether no value holds a sub-document field ``logical`` does not know, in loops
    that stay in C (map, filter, chain); a value of the wrong shape raises TypeError."""
    if logical.kind == "list":
        item = logical.item
        return item is None or _fits(itertools.chain.from_iterable(filter(None, values)), item)
    if logical.kind != "struct":
        return True
    present = list(filter(None, values))
    if not all(map(_field_names(logical).issuperset, present)):
        return False
    return all(
        _fits(map(dict.get, present, itertools.repeat(c.name)), c.type)
        for c in logical.fields
        if c.type.kind in NESTED
    )


@functools.lru_cache(maxsize=256)
def _field_names(logical: LogicalType) -> frozenset[str]:
    return frozenset(c.name for c in logical.fields)


def _object_ids(values: list[Any]) -> pa.Array[Any] | None:
    """A column of ObjectIds as their 24 hex digits in one pass, or None unless every
    value is an ObjectId."""
    import bson
    import pyarrow as pa

    if not values or values[0].__class__ is not bson.ObjectId:
        return None
    try:
        raw = b"".join(map(_OBJECT_ID_BYTES, values))
    except (AttributeError, TypeError):
        return None
    if len(raw) != 12 * len(values):
        return None
    digits = pa.py_buffer(raw.hex().encode())
    hexed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(24), len(values), [None, digits])
    return hexed.cast(pa.string())


_OBJECT_ID_BYTES = operator.attrgetter("binary")


def _arrow_errors() -> tuple[type[Exception], ...]:
    """What ``pa.array`` raises for a value its type cannot hold."""
    import pyarrow as pa

    return (pa.ArrowException, TypeError, ValueError, OverflowError)


def column_array(
    values: list[Any], logical: LogicalType, dtype: pa.DataType, path: str
) -> tuple[pa.Array[Any], list[tuple[int, str]], bool]:
    """One column: the values as ``dtype``, (position, reason) of those it cannot hold
    (NULL in the array), and whether pyarrow took the values as they were (``as_is``). Plain values
    take one ``pa.array`` call; BSON types (ObjectId, Decimal128, ...) are made plain
    first; only a column that still fails is converted value by value."""
    import pyarrow as pa

    if logical.kind == "json":
        return pa.array([_json(v) for v in values], pa.string()), [], False
    errors = _arrow_errors()
    bad = _unknown_fields(values, logical, path)
    if logical.kind != "uuid":  # pa.array would take a UUID's bytes as text
        try:
            return pa.array(values, dtype), bad, True
        except errors:
            pass
    plain = [_plain(v, logical) for v in values]
    try:
        return pa.array(plain, dtype), bad, False
    except errors:
        pass
    held: list[Any] = []
    for i, value in enumerate(plain):
        try:
            pa.array([value], dtype)
        except errors:
            held.append(None)
            bad.append((i, f"{path}: {_show(values[i])} ({bson_kind(values[i])}) is not {logical}"))
        else:
            held.append(value)
    return pa.array(held, dtype), bad, False


def _unknown_fields(values: list[Any], logical: LogicalType, path: str) -> list[tuple[int, str]]:
    """Where a document holds a sub-document field the struct does not know (pyarrow
    would drop it without a word). Works on whole columns: the items of every list are
    checked in one pass, with the position of the document they belong to."""
    if logical.kind == "list" and logical.item is not None and logical.item.kind in NESTED:
        owners = [i for i, items in enumerate(values) if isinstance(items, list) for _ in items]
        items = [item for v in values if isinstance(v, list) for item in v]
        found = _unknown_fields(items, logical.item, f"{path}[]")
        return list({owners[i]: (owners[i], reason) for i, reason in found}.values())
    if logical.kind != "struct":
        return []
    known = frozenset(c.name for c in logical.fields)
    fits = known.issuperset
    bad = [
        (i, f"{path}: fields {', '.join(sorted(set(v) - known))} are not in the inferred schema")
        for i, v in enumerate(values)
        if v.__class__ is dict and not fits(v)
    ]
    for column in logical.fields:
        if column.type.kind in NESTED:
            name = column.name
            inner = [v.get(name) if v.__class__ is dict else None for v in values]
            bad += _unknown_fields(inner, column.type, f"{path}.{name}")
    return bad


def _plain(value: Any, logical: LogicalType) -> Any:
    """A decoded BSON value as the plain Python value Arrow takes for ``logical``."""
    if value is None:
        return None
    if logical.kind == "json":
        return _json(value)
    kind = bson_kind(value)
    if kind == "object" and logical.kind == "struct":
        types = {c.name: c.type for c in logical.fields}
        return {k: _plain(v, types[k]) if k in types else v for k, v in value.items()}
    if kind == "array" and logical.kind == "list" and logical.item is not None:
        return [_plain(v, logical.item) for v in value]
    if logical.kind == "string" and kind not in ("object", "array"):
        return _text(value, kind)
    if kind == "objectId":
        return str(value)
    if kind == "decimal":
        exact = value.to_decimal()
        if logical.kind == "decimal" and logical.precision is None:
            return str(exact)
        return float(exact) if logical.kind.startswith("float") else exact
    if kind == "uuid":
        import uuid

        text = str(value if isinstance(value, uuid.UUID) else value.as_uuid(value.subtype))
        return text if logical.kind in ("uuid", "string") else value
    if kind == "binData":
        return bytes(value)
    if kind == "timestamp":
        return {"t": dt.datetime.fromtimestamp(value.time, dt.UTC), "i": value.inc}
    if kind in ("regex", "javascript", "minKey", "maxKey", "unknown"):
        return _text(value, kind)
    if logical.kind == "decimal" and logical.precision is None and kind in NUMERIC:
        return str(value)
    return value


def _text(value: Any, kind: str) -> str:
    if kind == "regex":
        flags = value.flags
        if isinstance(flags, int):
            flags = "".join(letter for bit, letter in _REGEX_FLAGS if flags & bit)
        return f"/{value.pattern}/{flags}"
    if kind in ("minKey", "maxKey"):
        return kind
    if kind == "date":
        return str((value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat())
    return str(value)


#: re module flag bits -> the letters MongoDB writes them as
_REGEX_FLAGS = ((2, "i"), (4, "l"), (8, "m"), (16, "s"), (32, "u"), (64, "x"))


def _json(value: Any) -> str | None:
    """Relaxed extended JSON: plain JSON where it can be, ``{"$oid": ...}``,
    ``{"$date": ...}``, ``{"$numberDecimal": ...}`` where BSON has more types."""
    if value is None:
        return None
    from bson import json_util

    return str(json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS))


def _show(value: Any) -> str:
    text = _json(value) or "null"
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- source


class MongoDBSource:
    """One collection, or an aggregation's result, as Arrow batches."""

    def __init__(
        self,
        conn: MongoDBConnection,
        spec: SourceSpec,
        resources: RunResources,
        batch_size: int,
        parallelism: int,
    ):
        if spec.collection is None:
            raise SchemaError("a MongoDB source needs 'collection'", hint="name the collection")
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
        global _KINDS
        if not _KINDS:
            _KINDS = _kinds()
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
            raise _error(exc, self.name) from exc
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
            raise _error(exc, self.name) from exc
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
            raise _error(exc, self.name) from exc

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
            [_json(document) or "{}" for document, _ in rejected],
            [reason for _, reason in rejected],
            "MONGODB_CONVERSION",
            run_id=run_id,
            stream=self.name,
        )


def _error(exc: Exception, name: str) -> Exception:
    import pymongo.errors

    if isinstance(
        exc, pymongo.errors.ServerSelectionTimeoutError | pymongo.errors.ConnectionFailure
    ):
        return ConnectionFailedError(
            f"cannot reach MongoDB for {name}: {type(exc).__name__}",
            hint="check the uri, that the server runs and server_selection_timeout",
        )
    return SourceError(
        f"reading MongoDB {name} failed: {exc}",
        hint="check the collection, the filter or pipeline, and the connection",
    )


# --------------------------------------------------------------------------- factories


def open_source(
    conn: MongoDBConnection,
    spec: SourceSpec,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> MongoDBSource:
    return MongoDBSource(conn, spec, resources, batch_size, parallelism)
