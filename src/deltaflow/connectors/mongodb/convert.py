"""Decoded documents -> Arrow record batches, slice by slice (``to_batch``).

The tuned path: the columns of plain kinds go through one struct conversion per slice,
the others column by column (``columns.column_array``). Measured with
``benchmarks/mongodb.py``; change it only with a run of that benchmark.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import operator
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.mongodb.columns import NESTED, arrow_errors, column_array
from deltaflow.schema.types import LogicalType, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

#: documents converted together on the fast path: few enough that the documents the field
#: checks have just walked are still in the CPU cache when pyarrow converts them (on the
#: nested benchmark shape 512 converts ~1.5x faster than 65,536 at once)
SLICE = 512
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
        except arrow_errors():
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
