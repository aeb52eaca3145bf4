"""Schema inference from a sample of documents.

The union of the BSON kinds seen at each field path, mapped by
``deltaflow.schema.mappings.MONGODB_LOGICAL``: integers and doubles read as float64,
other mixes as JSON (or text), sub-documents as structs down to ``max_nesting``, arrays
as lists of their items' type. A declared type wins over what the sample shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from deltaflow.connectors.mongodb.kinds import NUMERIC, bson_kind
from deltaflow.schema.mappings import MONGODB_LOGICAL
from deltaflow.schema.types import Column, LogicalType, TableSchema

log = logging.getLogger("deltaflow.mongodb")


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
