"""One column of decoded documents as Arrow, and BSON values made plain.

Plain values take one ``pa.array`` call; BSON types (ObjectId, Decimal128, ...) are made
plain first; only a column that still fails is converted value by value, which finds the
documents it cannot hold and the reason. Values of a JSON column are written as relaxed
extended JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.mongodb.kinds import NUMERIC, bson_kind
from deltaflow.schema.types import LogicalType

if TYPE_CHECKING:
    import pyarrow as pa

#: logical kinds that hold sub-documents: checked for fields the schema does not know
NESTED = ("struct", "list")


def arrow_errors() -> tuple[type[Exception], ...]:
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
        return pa.array([as_json(v) for v in values], pa.string()), [], False
    errors = arrow_errors()
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
        return as_json(value)
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


def as_json(value: Any) -> str | None:
    """Relaxed extended JSON: plain JSON where it can be, ``{"$oid": ...}``,
    ``{"$date": ...}``, ``{"$numberDecimal": ...}`` where BSON has more types."""
    if value is None:
        return None
    from bson import json_util

    return str(json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS))


def _show(value: Any) -> str:
    text = as_json(value) or "null"
    return text if len(text) <= 80 else text[:77] + "..."
