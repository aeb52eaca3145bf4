"""BSON kinds: the ``$type`` alias of a value as pymongo decodes it.

Inference unions these kinds per field path; conversion names them in its reasons. The
table by Python type is filled on first use (``load_kinds``), so that importing the
connector does not import bson.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

NUMERIC = frozenset({"int", "long", "double"})


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


def load_kinds() -> None:
    """Fill the table of kinds by Python type, once (bson is imported lazily)."""
    if not _KINDS:
        _KINDS.update(_kinds())
