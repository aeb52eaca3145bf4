"""The files source: every file a path or glob matches, read with one schema."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from deltaflow.connectors.files.formats import READERS, infer_format, read_errors
from deltaflow.connectors.protocol import Split
from deltaflow.errors import SourceError
from deltaflow.schema.types import TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.sources import FileSource


class FilesSource:
    def __init__(self, root: Path, spec: FileSource, batch_size: int):
        self.spec = spec
        self.pattern = str(root / spec.path)
        self.format = infer_format(spec.path, spec.format)
        self.batch_size = batch_size
        self.name = spec.stream or _stream_name(spec.path)
        self._schema: pa.Schema | None = None
        self.file_schema: pa.Schema | None = None  # every column the files hold

    def files(self) -> list[str]:
        matches = sorted(p for p in glob.glob(self.pattern, recursive=True) if os.path.isfile(p))
        if not matches:
            raise SourceError(
                f"no files match '{self.spec.path}' (looked for {self.pattern})",
                hint="check the path and the connection's base_path",
            )
        return matches

    def discover(self) -> TableSchema:
        schema: pa.Schema = READERS[self.format].schema(self, self.files())
        self.file_schema = schema
        if self.spec.columns:
            missing = [c for c in self.spec.columns if c not in schema.names]
            if missing:
                raise SourceError(
                    f"columns {missing} are not in '{self.spec.path}'",
                    hint=f"available columns: {', '.join(schema.names)}",
                )
            schema = _select(schema, self.spec.columns)
        self._schema = schema
        return TableSchema.from_arrow(schema)

    def splits(self) -> list[Split]:
        with read_errors(f"'{self.spec.path}'", self.format):
            splits: list[Split] = READERS[self.format].splits(self, self.files())
        return splits

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        schema = self._schema or self.discover().to_arrow()
        with read_errors(split.params["file"], self.format):
            for batch in READERS[self.format].read(self, split, schema):
                yield _conform(batch, schema)


def _stream_name(path: str) -> str:
    """The file's stem ('orders' for 'data/orders.csv'); empty for a glob of many names."""
    name = Path(path).name
    if any(ch in name for ch in "*?["):
        return ""
    return "".join(ch if ch.isalnum() else "_" for ch in Path(name).stem).strip("_")


def _select(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([schema.field(c) for c in columns])


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch with exactly ``schema``'s columns: missing ones NULL, others cast."""
    import pyarrow as pa

    if batch.schema.equals(schema):
        return batch
    columns = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
        else:
            columns.append(batch.column(index).cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
