"""Parquet, CSV and JSON Lines files: local paths and globs, as source and destination.

A source reads every file a path or glob matches; Parquet files split by row group, CSV
and JSON Lines by file. All files of a stream are read with one schema: the union of the
Parquet schemas, or the types inferred from the first CSV / JSON Lines file.

A destination is a directory of part files. ``append`` adds a part per load; ``replace``
writes the new parts into a fresh directory and swaps it in.

Modules: ``formats`` (extensions, a reader per format), ``source``, ``destination``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deltaflow.connectors.files.destination import PARQUET_DICTIONARY_LIMIT, FilesDestination
from deltaflow.connectors.files.formats import (
    EXTENSIONS,
    ROW_GROUPS_PER_SPLIT,
    SUFFIX,
    infer_format,
)
from deltaflow.connectors.files.source import FilesSource

if TYPE_CHECKING:
    from deltaflow.config.connections import FilesConnection
    from deltaflow.config.models import DestinationSpec
    from deltaflow.config.sources import FileSource
    from deltaflow.connectors.protocol import RunResources

__all__ = [
    "EXTENSIONS",
    "PARQUET_DICTIONARY_LIMIT",
    "ROW_GROUPS_PER_SPLIT",
    "SUFFIX",
    "FilesDestination",
    "FilesSource",
    "infer_format",
    "open_destination",
    "open_source",
]


def _root(conn: FilesConnection, resources: RunResources) -> Path:
    return resources.resolve(conn.base_path)


def open_source(
    conn: FilesConnection,
    spec: FileSource,
    resources: RunResources,
    batch_size: int,
    parallelism: int = 1,
) -> FilesSource:
    """Files split by row groups and files, whatever ``parallelism``."""
    return FilesSource(_root(conn, resources), spec, batch_size)


def open_destination(
    conn: FilesConnection, spec: DestinationSpec, resources: RunResources
) -> FilesDestination:
    assert spec.path is not None
    fmt = spec.format or EXTENSIONS.get(Path(spec.path).suffix.lower(), "parquet")
    directory = _root(conn, resources) / spec.path
    return FilesDestination(directory, fmt, resources.run_id)
