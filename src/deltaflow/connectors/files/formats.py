"""The file formats: extensions, and a reader per format (schema, splits, batches).

Parquet files split by row group (``ROW_GROUPS_PER_SPLIT`` a split) and unify their
schemas; CSV and JSON Lines split by file, their types inferred from each file's first
block and united, text where the files disagree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.protocol import Split
from deltaflow.errors import SourceError

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import FileFormat
    from deltaflow.config.sources import CsvOptions
    from deltaflow.connectors.files.source import FilesSource

EXTENSIONS: dict[str, FileFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
SUFFIX: dict[str, str] = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}
ROW_GROUPS_PER_SPLIT = 4


def infer_format(path: str, declared: FileFormat | None) -> FileFormat:
    if declared:
        return declared
    suffix = Path(path.rstrip("*")).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    raise SourceError(
        f"cannot tell the format of '{path}' from its extension",
        hint=f"add 'format:' with one of: parquet, csv, jsonl "
        f"(known extensions: {', '.join(EXTENSIONS)})",
    )


@contextlib.contextmanager
def read_errors(what: str, fmt: str) -> Iterator[None]:
    """pyarrow's errors reading files, as SourceError naming the file."""
    import pyarrow as pa

    try:
        yield
    except (OSError, ValueError, pa.ArrowException) as exc:  # ArrowInvalid is a ValueError
        raise SourceError(
            f"cannot read {what}: {exc}", hint="check that the file is valid " + fmt
        ) from exc


def _decode_dictionaries(schema: pa.Schema) -> pa.Schema:
    """Dictionary-encoded columns as their value type: one file's categorical column and
    another's plain column then unify (batches are decoded by source._conform's cast)."""
    import pyarrow as pa

    fields = [
        f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema
    ]
    return pa.schema(fields)


class _Parquet:
    @staticmethod
    def schema(source: FilesSource, files: list[str]) -> pa.Schema:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schemas = []
        for file in files:
            with read_errors(file, "parquet"):
                schemas.append(_decode_dictionaries(pq.read_schema(file)))
        try:
            return pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            raise SourceError(
                f"the files matching '{source.spec.path}' have incompatible schemas: {exc}",
                hint="read them in separate streams, or rewrite them with one schema",
            ) from exc

    @staticmethod
    def splits(source: FilesSource, files: list[str]) -> list[Split]:
        import pyarrow.parquet as pq

        out: list[Split] = []
        for file in files:
            meta = pq.read_metadata(file)
            for first in range(0, meta.num_row_groups, ROW_GROUPS_PER_SPLIT):
                groups = list(range(first, min(first + ROW_GROUPS_PER_SPLIT, meta.num_row_groups)))
                rows = sum(meta.row_group(g).num_rows for g in groups)
                out.append(Split(len(out), {"file": file, "row_groups": groups}, rows))
        return out

    @staticmethod
    def read(source: FilesSource, split: Split, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        # pre_buffer caches every column chunk read until the file closes: memory would
        # grow with the file. Without it a split holds about one row group at a time.
        with pq.ParquetFile(split.params["file"], pre_buffer=False) as file:
            columns = [c for c in schema.names if c in file.schema_arrow.names]
            yield from file.iter_batches(
                batch_size=source.batch_size, row_groups=split.params["row_groups"], columns=columns
            )


class _Csv:
    @staticmethod
    def options(source: FilesSource, schema: pa.Schema | None = None) -> dict[str, Any]:
        import pyarrow.csv as csv

        opts: CsvOptions | None = source.spec.csv
        delimiter = opts.delimiter if opts else ","
        header = opts.header if opts else True
        nulls = opts.null_values if opts else [""]
        return {
            "read_options": csv.ReadOptions(
                autogenerate_column_names=not header, block_size=1 << 22
            ),
            "parse_options": csv.ParseOptions(delimiter=delimiter),
            "convert_options": csv.ConvertOptions(
                null_values=nulls,
                strings_can_be_null=True,
                column_types=schema,
                include_columns=schema.names if schema else None,
                include_missing_columns=True,  # a column another file lacks reads as NULL
            ),
        }

    @staticmethod
    def schema(source: FilesSource, files: list[str]) -> pa.Schema:
        import pyarrow.csv as csv

        def first_block(file: str) -> pa.Schema:
            with read_errors(file, "csv"), csv.open_csv(file, **_Csv.options(source)) as r:
                return r.schema

        return _union([first_block(f) for f in files])

    @staticmethod
    def splits(source: FilesSource, files: list[str]) -> list[Split]:
        return [Split(i, {"file": f}) for i, f in enumerate(files)]

    @staticmethod
    def read(source: FilesSource, split: Split, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        import pyarrow.csv as csv

        with csv.open_csv(split.params["file"], **_Csv.options(source, schema)) as reader:
            yield from _rebatch(reader, source.batch_size)


class _JsonLines:
    @staticmethod
    def schema(source: FilesSource, files: list[str]) -> pa.Schema:
        import pyarrow.json as pj

        options = pj.ReadOptions(block_size=1 << 22)

        def first_block(file: str) -> pa.Schema:
            with read_errors(file, "jsonl"), pj.open_json(file, read_options=options) as r:
                return r.schema

        return _union([first_block(f) for f in files])

    @staticmethod
    def splits(source: FilesSource, files: list[str]) -> list[Split]:
        return _Csv.splits(source, files)

    @staticmethod
    def read(source: FilesSource, split: Split, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        import pyarrow.json as pj

        # A field missing from the inferred schema fails loudly: ignoring it would drop data.
        options = pj.ParseOptions(
            explicit_schema=source.file_schema or schema, unexpected_field_behavior="error"
        )
        try:
            with pj.open_json(
                split.params["file"],
                parse_options=options,
                read_options=pj.ReadOptions(block_size=1 << 22),
            ) as reader:
                yield from _rebatch(reader, source.batch_size)
        except ValueError as exc:
            if "unexpected field" not in str(exc).lower():
                raise
            raise SourceError(
                f"{split.params['file']}: {exc}; the columns were inferred from the first "
                "4 MB of each file and this field first appears later",
                hint="put a record that has every field near the start of the file, or "
                "convert the file to Parquet",
            ) from exc


def _union(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for all files: every file's fields, types promoted where Arrow can and
    text where the files disagree; a column NULL in every inferred block is text too."""
    import pyarrow as pa

    types: dict[str, pa.DataType] = {}
    for schema in schemas:
        for field in schema:
            seen = types.get(field.name)
            types[field.name] = field.type if seen is None else _promote(seen, field.type)
    return pa.schema(
        [(name, pa.string() if pa.types.is_null(t) else t) for name, t in types.items()]
    )


def _promote(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if a.equals(b):
        return a
    try:
        merged = pa.unify_schemas(
            [pa.schema([("x", a)]), pa.schema([("x", b)])], promote_options="permissive"
        )
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.string()
    promoted: pa.DataType = merged.field("x").type
    return promoted


def _rebatch(reader: Any, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``batch_size`` rows from a reader that yields blocks."""
    for block in reader:
        for offset in range(0, block.num_rows, batch_size):
            yield block.slice(offset, batch_size)


READERS: dict[str, Any] = {"parquet": _Parquet, "csv": _Csv, "jsonl": _JsonLines}
