"""Parquet, CSV and JSON Lines files: local paths and globs, as source and destination.

A source reads every file a path or glob matches; Parquet files split by row group, CSV
and JSON Lines by file. All files of a stream are read with one schema: the union of the
Parquet schemas, or the types inferred from the first CSV / JSON Lines file.

A destination is a directory of part files. ``append`` adds a part per load; ``replace``
writes the new parts into a fresh directory and swaps it in.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaflow import quarantine
from deltaflow.connectors._common import relay_failures
from deltaflow.connectors.protocol import LoadResult, RunResources, Split, StateRecord
from deltaflow.errors import DestinationError, LoadError, SourceError
from deltaflow.schema.mappings import parquet_type
from deltaflow.schema.types import TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import FileFormat, FilesConnection, WriteMode
    from deltaflow.config.models import CsvOptions, DestinationSpec, SourceSpec

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


# --------------------------------------------------------------------------- source


class FilesSource:
    def __init__(self, root: Path, spec: SourceSpec, batch_size: int):
        assert spec.path is not None
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
        schema: pa.Schema = _READERS[self.format].schema(self, self.files())
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
        with _read_errors(f"'{self.spec.path}'", self.format):
            splits: list[Split] = _READERS[self.format].splits(self, self.files())
        return splits

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        schema = self._schema or self.discover().to_arrow()
        with _read_errors(split.params["file"], self.format):
            for batch in _READERS[self.format].read(self, split, schema):
                yield _conform(batch, schema)


@contextlib.contextmanager
def _read_errors(what: str, fmt: str) -> Iterator[None]:
    """pyarrow's errors reading files, as SourceError naming the file."""
    import pyarrow as pa

    try:
        yield
    except (OSError, ValueError, pa.ArrowException) as exc:  # ArrowInvalid is a ValueError
        raise SourceError(
            f"cannot read {what}: {exc}", hint="check that the file is valid " + fmt
        ) from exc


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


def _decode_dictionaries(schema: pa.Schema) -> pa.Schema:
    """Dictionary-encoded columns as their value type: one file's categorical column and
    another's plain column then unify (batches are decoded by _conform's cast)."""
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
            with _read_errors(file, "parquet"):
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
            with _read_errors(file, "csv"), csv.open_csv(file, **_Csv.options(source)) as r:
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
            with _read_errors(file, "jsonl"), pj.open_json(file, read_options=options) as r:
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


_READERS: dict[str, Any] = {"parquet": _Parquet, "csv": _Csv, "jsonl": _JsonLines}


# --------------------------------------------------------------------------- destination


class FilesDestination:
    def __init__(self, directory: Path, fmt: FileFormat, run_id: str):
        self.directory = directory
        self.format = fmt
        self.run_id = run_id
        self.name = str(directory)

    def prepare(self, schema: TableSchema) -> None:
        """Fail early on a column Parquet cannot store; directories are made when loading."""
        if self.format == "parquet":
            for column in schema.columns:
                parquet_type(column.type)

    def load(
        self,
        batches: pa.RecordBatchReader,
        write_mode: WriteMode,
        primary_key: tuple[str, ...],
        state: Callable[[], list[StateRecord]] | None = None,
        rejected: Callable[[], pa.Table | None] | None = None,
    ) -> LoadResult:
        if state is not None:  # validation refuses incremental steps into files
            raise LoadError(
                f"files destination {self.name} cannot keep incremental state",
                hint="load incrementally into DuckDB, PostgreSQL or BigQuery",
            )
        target = self.directory
        if write_mode == "replace":
            target = self.directory.with_name(f".{self.directory.name}.{self.run_id}.new")
            shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        part = _new_part(target, self.run_id, SUFFIX[self.format])
        tmp = part.with_name(f".{part.name}.tmp")
        try:
            rows = _WRITERS[self.format](batches, tmp)
            os.replace(tmp, part)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if write_mode == "replace":  # drop the half-built directory, keep the current one
                shutil.rmtree(target, ignore_errors=True)
            raise
        if write_mode == "replace":
            _swap_directory(target, self.directory)
        held = rejected() if rejected else None
        if held is None:
            return LoadResult(rows, self._table_rows())
        # Not in a transaction (files have none): written once the rows are in place.
        import pyarrow.parquet as pq

        directory = self.directory.with_name(self.directory.name + quarantine.SUFFIX)
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(held, _new_part(directory, self.run_id, ".parquet"))
        details = {"quarantine_table": str(directory)}
        return LoadResult(rows, self._table_rows(), details, held.num_rows)

    def _table_rows(self) -> int | None:
        """Rows in all parts, from Parquet footers; unknown (None) for text formats."""
        if self.format != "parquet":
            return None
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(p).num_rows for p in self.directory.glob("*.parquet"))


def _new_part(directory: Path, run_id: str, suffix: str) -> Path:
    """``part-<run id>``, numbered when the run already wrote a part (a second step)."""
    part, number = directory / f"part-{run_id}{suffix}", 1
    while part.exists():
        number += 1
        part = directory / f"part-{run_id}-{number}{suffix}"
    return part


def _swap_directory(new: Path, current: Path) -> None:
    old = current.with_name(f".{current.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if current.exists():
        os.replace(current, old)
    os.replace(new, current)
    shutil.rmtree(old, ignore_errors=True)


PARQUET_DICTIONARY_LIMIT = 64 << 10


def _write_parquet(batches: pa.RecordBatchReader, path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    logical = TableSchema.from_arrow(batches.schema)
    schema = pa.schema(
        [pa.field(c.name, parquet_type(c.type), c.nullable) for c in logical.columns]
    )
    rows = 0
    # A small dictionary page limit keeps dictionaries for low-cardinality columns and
    # gives up early on the rest: about 2.5x less CPU than the default, files no larger.
    with pq.ParquetWriter(
        path, schema, compression="zstd", dictionary_pagesize_limit=PARQUET_DICTIONARY_LIMIT
    ) as writer:
        for batch in batches:
            writer.write_batch(batch.cast(schema))
            rows += batch.num_rows
    return rows


def _write_with_duckdb(fmt: str) -> Any:
    def write(batches: pa.RecordBatchReader, path: Path) -> int:
        import duckdb

        failures: list[BaseException] = []
        with duckdb.connect(config={"python_enable_replacements": False}) as con:
            con.register("batches", relay_failures(batches, failures))
            options = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT json"
            path_literal = str(path).replace("'", "''")
            try:
                row = con.execute(f"COPY batches TO '{path_literal}' ({options})").fetchone()
            except duckdb.Error as exc:
                if failures:  # the batches failed: raise their error, not DuckDB's relay
                    raise failures[0] from None
                raise DestinationError(
                    f"cannot write {fmt} part {path.name}: {exc}",
                    hint="cast the columns the format cannot hold in the source query",
                ) from exc
            return int(row[0]) if row else 0

    return write


_WRITERS: dict[str, Any] = {
    "parquet": _write_parquet,
    "csv": _write_with_duckdb("csv"),
    "jsonl": _write_with_duckdb("jsonl"),
}


# --------------------------------------------------------------------------- factories


def _root(conn: FilesConnection, resources: RunResources) -> Path:
    return resources.resolve(conn.base_path)


def open_source(
    conn: FilesConnection,
    spec: SourceSpec,
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
