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

Modules: ``client`` (the MongoClient, error mapping), ``kinds`` (BSON kinds),
``inference`` (schema from a sample), ``convert`` (documents -> record batches),
``columns`` (one column, BSON values made plain), ``source`` (splits, reads, the
pushed-down window, rejected documents).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaflow.connectors.mongodb.client import client
from deltaflow.connectors.mongodb.columns import NESTED, column_array
from deltaflow.connectors.mongodb.convert import (
    DIRECT_KINDS,
    SLICE,
    Converted,
    gc_paused,
    to_batch,
)
from deltaflow.connectors.mongodb.convert import _Plan as _Plan
from deltaflow.connectors.mongodb.convert import _plan as _plan
from deltaflow.connectors.mongodb.inference import Inference, infer_schema
from deltaflow.connectors.mongodb.kinds import _KINDS as _KINDS
from deltaflow.connectors.mongodb.kinds import NUMERIC, bson_kind
from deltaflow.connectors.mongodb.kinds import _kinds as _kinds
from deltaflow.connectors.mongodb.source import MIN_SPLIT_DOCUMENTS, MongoDBSource

if TYPE_CHECKING:
    from deltaflow.config.connections import MongoDBConnection
    from deltaflow.config.sources import MongoSource
    from deltaflow.connectors.protocol import RunResources

__all__ = [
    "DIRECT_KINDS",
    "MIN_SPLIT_DOCUMENTS",
    "NESTED",
    "NUMERIC",
    "SLICE",
    "Converted",
    "Inference",
    "MongoDBSource",
    "bson_kind",
    "client",
    "column_array",
    "gc_paused",
    "infer_schema",
    "open_source",
    "to_batch",
]


def open_source(
    conn: MongoDBConnection,
    spec: MongoSource,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> MongoDBSource:
    return MongoDBSource(conn, spec, resources, batch_size, parallelism)
