"""The files connector against real Parquet, CSV and JSON Lines files in tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltaflow.config.connections import FileFormat, FilesConnection, WriteMode
from deltaflow.config.models import DestinationSpec
from deltaflow.config.sources import CsvOptions, FileSource
from deltaflow.connectors import open_destination, open_source
from deltaflow.connectors.files import ROW_GROUPS_PER_SPLIT, FilesDestination, FilesSource
from deltaflow.connectors.protocol import RunResources
from deltaflow.errors import SourceError, UnsupportedTypeError
from deltaflow.schema.types import LogicalType, TableSchema

CONN = FilesConnection(type="files", base_path="data")


class Boom(RuntimeError):
    pass


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def source(tmp_path: Path, batch_size: int = 1000, **spec: Any) -> FilesSource:
    resources = RunResources(tmp_path, "run-1")
    opened = open_source(CONN, FileSource(connection="files", **spec), resources, batch_size)
    assert isinstance(opened, FilesSource)
    return opened


def read_all(src: FilesSource) -> pa.Table:
    schema = src.discover()
    batches = [b for split in src.splits() for b in src.read(split)]
    return pa.Table.from_batches(batches, schema.to_arrow())


def column_type(schema: TableSchema, name: str) -> LogicalType:
    column = schema.column(name)
    assert column is not None, name
    return column.type


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


# --------------------------------------------------------------------------- Parquet source


def test_parquet_glob_reads_the_union_schema_with_missing_columns_null(
    tmp_path: Path, data: Path
) -> None:
    pq.write_table(
        pa.table({"id": pa.array([1, 2], pa.int32()), "name": ["a", "b"]}), data / "p1.parquet"
    )
    pq.write_table(pa.table({"id": pa.array([3], pa.int64()), "score": [1.5]}), data / "p2.parquet")
    pq.write_table(pa.table({"score": [2.5], "name": ["z"]}), data / "p3.parquet")
    pq.write_table(pa.table({"other": [1]}), data / "skip.parquet")  # not matched

    src = source(tmp_path, path="p*.parquet")
    assert src.name == ""  # a glob of many names has no single stream name
    schema = src.discover()
    assert schema.names == ["id", "name", "score"]
    assert column_type(schema, "id") == LogicalType("int64")  # int32 and int64 unify
    table = read_all(src)
    assert table.to_pylist() == [
        {"id": 1, "name": "a", "score": None},
        {"id": 2, "name": "b", "score": None},
        {"id": 3, "name": None, "score": 1.5},
        {"id": None, "name": "z", "score": 2.5},
    ]


def test_parquet_splits_by_row_groups_with_row_counts(tmp_path: Path, data: Path) -> None:
    groups = ROW_GROUPS_PER_SPLIT * 2 + 1  # two full splits and one with a single group
    pq.write_table(
        pa.table({"n": list(range(groups * 10))}), data / "big.parquet", row_group_size=10
    )
    pq.write_table(pa.table({"n": [-1, -2, -3]}), data / "small.parquet")
    src = source(tmp_path, batch_size=7, path="*.parquet")
    src.discover()
    splits = src.splits()
    assert [s.index for s in splits] == [0, 1, 2, 3]
    assert [s.rows for s in splits] == [40, 40, 10, 3]
    assert [s.params["row_groups"] for s in splits] == [[0, 1, 2, 3], [4, 5, 6, 7], [8], [0]]
    assert [Path(s.params["file"]).name for s in splits] == ["big.parquet"] * 3 + ["small.parquet"]
    for split in splits:
        batches = list(src.read(split))
        assert all(b.num_rows <= 7 for b in batches)
        assert sum(b.num_rows for b in batches) == split.rows
    values = read_all(src)["n"].to_pylist()
    assert values == [*range(90), -1, -2, -3]


def test_parquet_stream_name_is_the_file_stem(tmp_path: Path, data: Path) -> None:
    pq.write_table(pa.table({"n": [1]}), data / "daily-orders.parquet")
    assert source(tmp_path, path="daily-orders.parquet").name == "daily_orders"
    assert source(tmp_path, path="daily-orders.parquet", stream="orders").name == "orders"


def test_columns_selects_and_orders_columns(tmp_path: Path, data: Path) -> None:
    pq.write_table(pa.table({"a": [1], "b": ["x"], "c": [True]}), data / "t1.parquet")
    pq.write_table(pa.table({"a": [2], "d": [0.5]}), data / "t2.parquet")
    src = source(tmp_path, path="t*.parquet", columns=["c", "a"])
    assert src.discover().names == ["c", "a"]
    assert read_all(src).to_pylist() == [{"c": True, "a": 1}, {"c": None, "a": 2}]


def test_unknown_column_error_names_the_available_ones(tmp_path: Path, data: Path) -> None:
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), data / "t.parquet")
    with pytest.raises(SourceError, match=r"\['nope'\]") as info:
        source(tmp_path, path="t.parquet", columns=["a", "nope"]).discover()
    assert info.value.hint == "available columns: a, b"


def test_no_matching_files_is_a_source_error_with_the_pattern(tmp_path: Path, data: Path) -> None:
    with pytest.raises(SourceError, match=r"no files match 'missing/\*\.parquet'"):
        source(tmp_path, path="missing/*.parquet").discover()


def test_recursive_glob_and_directories_are_not_files(tmp_path: Path, data: Path) -> None:
    (data / "a" / "b").mkdir(parents=True)
    (data / "x.parquet").mkdir()  # a directory with a matching name is skipped
    pq.write_table(pa.table({"n": [1]}), data / "a" / "one.parquet")
    pq.write_table(pa.table({"n": [2]}), data / "a" / "b" / "two.parquet")
    src = source(tmp_path, path="**/*.parquet")
    relative = [Path(f).relative_to(data).as_posix() for f in src.files()]
    assert relative == ["a/b/two.parquet", "a/one.parquet"]  # sorted by path
    assert sorted(read_all(src)["n"].to_pylist()) == [1, 2]


@pytest.mark.parametrize("path", ["data.txt", "data/*", "orders"])
def test_unknown_extension_hints_at_format(tmp_path: Path, path: str) -> None:
    with pytest.raises(SourceError, match="cannot tell the format") as info:
        source(tmp_path, path=path)
    assert info.value.hint is not None
    assert "format:" in info.value.hint


def test_declared_format_overrides_the_extension(tmp_path: Path, data: Path) -> None:
    (data / "export.txt").write_text("a,b\n1,x\n")
    assert read_all(source(tmp_path, path="export.txt", format="csv")).to_pylist() == [
        {"a": 1, "b": "x"}
    ]


def test_a_corrupt_file_is_a_source_error_naming_it(tmp_path: Path, data: Path) -> None:
    pq.write_table(pa.table({"n": [1]}), data / "good.parquet")
    src = source(tmp_path, path="*.parquet")
    src.discover()
    splits = src.splits()
    (data / "good.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(SourceError, match=r"good\.parquet"):
        list(src.read(splits[0]))


def test_parquet_dictionary_and_plain_strings_unify(tmp_path: Path, data: Path) -> None:
    # e.g. one file written from a pandas categorical, the next from plain strings
    categorical = pa.array(["a", "b", "a"]).dictionary_encode()
    pq.write_table(pa.table({"c": categorical}), data / "p1.parquet")
    pq.write_table(pa.table({"c": ["z"]}), data / "p2.parquet")
    src = source(tmp_path, path="p*.parquet")
    assert column_type(src.discover(), "c") == LogicalType("string")
    assert read_all(src)["c"].to_pylist() == ["a", "b", "a", "z"]


def test_parquet_files_with_incompatible_types_are_a_source_error(
    tmp_path: Path, data: Path
) -> None:
    pq.write_table(pa.table({"c": ["x"]}), data / "p1.parquet")
    pq.write_table(pa.table({"c": [1]}), data / "p2.parquet")
    with pytest.raises(SourceError, match="incompatible schemas") as info:
        source(tmp_path, path="p*.parquet").discover()
    assert "Field c" in str(info.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [("bad.parquet", "not parquet"), ("bad.jsonl", "not json\n"), ("bad.csv", "")],
)
def test_an_unreadable_file_at_discovery_is_a_source_error_naming_it(
    tmp_path: Path, data: Path, name: str, content: str
) -> None:
    (data / name).write_text(content)
    with pytest.raises(SourceError, match=r"cannot read .*bad\.") as info:
        source(tmp_path, path=name).discover()
    assert info.value.hint is not None
    assert info.value.hint.startswith("check that the file is valid")


# --------------------------------------------------------------------------- CSV source


def test_csv_with_header_infers_types(tmp_path: Path, data: Path) -> None:
    (data / "people.csv").write_text("id,name,score\n1,ann,2.5\n2,,\n")
    src = source(tmp_path, path="people.csv")
    assert src.name == "people"
    schema = src.discover()
    assert [(c.name, c.type.kind) for c in schema.columns] == [
        ("id", "int64"),
        ("name", "string"),
        ("score", "float64"),
    ]
    assert read_all(src).to_pylist() == [
        {"id": 1, "name": "ann", "score": 2.5},
        {"id": 2, "name": None, "score": None},
    ]


def test_csv_delimiter_and_null_values(tmp_path: Path, data: Path) -> None:
    (data / "people.csv").write_text("id;name;city\n1;NA;Oslo\n2;bob;-\n3;;Rome\n")
    options = CsvOptions(delimiter=";", null_values=["NA", "-"])
    table = read_all(source(tmp_path, path="people.csv", csv=options))
    assert table.to_pylist() == [
        {"id": 1, "name": None, "city": "Oslo"},
        {"id": 2, "name": "bob", "city": None},
        {"id": 3, "name": "", "city": "Rome"},  # "" is a value once null_values is set
    ]


def test_csv_without_header_names_columns(tmp_path: Path, data: Path) -> None:
    (data / "raw.csv").write_text("1,a\n2,b\n")
    src = source(tmp_path, path="raw.csv", csv=CsvOptions(header=False))
    assert src.discover().names == ["f0", "f1"]
    assert read_all(src)["f1"].to_pylist() == ["a", "b"]


def test_csv_files_are_read_with_the_first_files_types(tmp_path: Path, data: Path) -> None:
    (data / "a.csv").write_text("id,code\n1,7\n")
    (data / "b.csv").write_text("code,id\n0042,2\n")  # other column order, text-like value
    src = source(tmp_path, batch_size=1, path="*.csv")
    assert column_type(src.discover(), "code") == LogicalType("int64")
    assert [Path(s.params["file"]).name for s in src.splits()] == ["a.csv", "b.csv"]
    assert read_all(src).to_pylist() == [{"id": 1, "code": 7}, {"id": 2, "code": 42}]


def test_csv_files_that_disagree_on_a_type_read_it_as_text(tmp_path: Path, data: Path) -> None:
    (data / "a.csv").write_text("id,n\n1,\n")
    (data / "b.csv").write_text("id,n\nnot-a-number,\n")
    src = source(tmp_path, path="*.csv")
    assert src.discover().to_arrow().field("id").type == pa.string()
    assert src.discover().to_arrow().field("n").type == pa.string()  # NULL everywhere: text
    assert read_all(src).column("id").to_pylist() == ["1", "not-a-number"]


def test_csv_is_rebatched_to_the_batch_size(tmp_path: Path, data: Path) -> None:
    (data / "n.csv").write_text("n\n" + "".join(f"{i}\n" for i in range(25)))
    src = source(tmp_path, batch_size=10, path="n.csv")
    src.discover()
    assert [b.num_rows for b in src.read(src.splits()[0])] == [10, 10, 5]


# --------------------------------------------------------------------------- JSON Lines source


def test_jsonl_nested_objects_become_structs(tmp_path: Path, data: Path) -> None:
    write_jsonl(
        data / "events.jsonl",
        [
            {"id": 1, "user": {"name": "ann", "geo": {"lat": 1.5}}, "tags": ["a", "b"]},
            {"id": 2, "user": {"name": None, "geo": None}, "tags": []},
        ],
    )
    src = source(tmp_path, path="events.jsonl")
    schema = src.discover()
    user = schema.column("user")
    assert user is not None
    assert user.type.kind == "struct"
    assert [f.name for f in user.type.fields] == ["name", "geo"]
    assert user.type.fields[1].type.kind == "struct"
    tags = schema.column("tags")
    assert tags is not None
    assert tags.type == LogicalType("list", item=LogicalType("string"))
    assert read_all(src)["user"].to_pylist() == [
        {"name": "ann", "geo": {"lat": 1.5}},
        {"name": None, "geo": None},
    ]


def test_jsonl_files_are_read_with_the_fields_of_every_file(tmp_path: Path, data: Path) -> None:
    write_jsonl(data / "1.jsonl", [{"id": 1, "name": "a"}])
    write_jsonl(data / "2.jsonl", [{"name": "b", "id": 2, "extra": True}, {"id": 3}])
    src = source(tmp_path, path="*.jsonl")
    assert src.discover().names == ["id", "name", "extra"]
    assert read_all(src).to_pylist() == [
        {"id": 1, "name": "a", "extra": None},  # fields a file lacks are NULL
        {"id": 2, "name": "b", "extra": True},
        {"id": 3, "name": None, "extra": None},
    ]


def test_jsonl_field_first_seen_after_the_inferred_block_fails_loudly(
    tmp_path: Path, data: Path
) -> None:
    rows = [{"id": i, "pad": "x" * 100} for i in range(50_000)] + [{"id": 0, "late": 1}]
    write_jsonl(data / "big.jsonl", rows)  # about 6 MB: 'late' is past the first 4 MB
    src = source(tmp_path, path="big.jsonl")
    assert "late" not in src.discover().names
    with pytest.raises(SourceError, match="first appears later") as info:
        read_all(src)
    assert info.value.hint is not None
    assert "Parquet" in info.value.hint


def test_jsonl_columns_selection(tmp_path: Path, data: Path) -> None:
    write_jsonl(data / "e.ndjson", [{"id": 1, "name": "a", "n": 5}])
    src = source(tmp_path, path="e.ndjson", columns=["n"])
    assert read_all(src).to_pylist() == [{"n": 5}]


def test_invalid_jsonl_is_a_source_error(tmp_path: Path, data: Path) -> None:
    write_jsonl(data / "1.jsonl", [{"id": 1}])
    (data / "2.jsonl").write_text('{"id": 2}\n{"id": \n')
    src = source(tmp_path, path="*.jsonl")
    with pytest.raises(SourceError, match=r"2\.jsonl") as info:
        src.discover()
    assert info.value.hint == "check that the file is valid jsonl"


# --------------------------------------------------------------------------- destination

SAMPLE = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "name": pa.array(["a", None, "c"]),
        "score": pa.array([1.5, 2.5, None]),
    }
)


def destination(
    tmp_path: Path, run_id: str, fmt: FileFormat, path: str = "out/orders"
) -> FilesDestination:
    resources = RunResources(tmp_path, run_id)
    spec = DestinationSpec(connection="files", path=path, format=fmt)
    opened = open_destination(CONN, spec, resources)
    assert isinstance(opened, FilesDestination)
    return opened


def write(target: FilesDestination, table: pa.Table, mode: WriteMode) -> Any:
    target.prepare(TableSchema.from_arrow(table.schema))
    return target.load(
        pa.RecordBatchReader.from_batches(table.schema, table.to_batches(2)), mode, ()
    )


def read_back(tmp_path: Path, fmt: FileFormat) -> list[dict[str, Any]]:
    table = read_all(source(tmp_path, path=f"out/orders/*.{fmt}"))
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def parts(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def hidden_siblings(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.parent.iterdir() if p.name.startswith("."))


FORMATS: list[FileFormat] = ["parquet", "csv", "jsonl"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_append_adds_a_part_per_run(tmp_path: Path, data: Path, fmt: FileFormat) -> None:
    first = write(destination(tmp_path, "r1", fmt), SAMPLE, "append")
    second = write(destination(tmp_path, "r2", fmt), SAMPLE.slice(0, 1), "append")
    assert (first.rows_loaded, second.rows_loaded) == (3, 1)
    directory = data / "out" / "orders"
    assert parts(directory) == [f"part-r1.{fmt}", f"part-r2.{fmt}"]
    assert read_back(tmp_path, fmt) == [
        {"id": 1, "name": "a", "score": 1.5},
        {"id": 1, "name": "a", "score": 1.5},
        {"id": 2, "name": None, "score": 2.5},
        {"id": 3, "name": "c", "score": None},
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_replace_keeps_only_the_new_parts(tmp_path: Path, data: Path, fmt: FileFormat) -> None:
    write(destination(tmp_path, "r1", fmt), SAMPLE, "append")
    write(destination(tmp_path, "r2", fmt), SAMPLE, "append")
    (data / "out" / "orders" / "stray.txt").write_text("left by someone")
    replaced = write(destination(tmp_path, "r3", fmt), SAMPLE.slice(1, 1), "replace")
    assert replaced.rows_loaded == 1
    directory = data / "out" / "orders"
    assert parts(directory) == [f"part-r3.{fmt}"]
    assert hidden_siblings(directory) == []  # no .new or .old directory left behind
    assert read_back(tmp_path, fmt) == [{"id": 2, "name": None, "score": 2.5}]


@pytest.mark.parametrize("fmt", FORMATS)
def test_replace_into_a_new_directory(tmp_path: Path, data: Path, fmt: FileFormat) -> None:
    write(destination(tmp_path, "r1", fmt), SAMPLE, "replace")
    assert parts(data / "out" / "orders") == [f"part-r1.{fmt}"]
    assert len(read_back(tmp_path, fmt)) == 3


def test_parquet_table_rows_count_every_part(tmp_path: Path) -> None:
    assert write(destination(tmp_path, "r1", "parquet"), SAMPLE, "append").table_rows == 3
    assert write(destination(tmp_path, "r2", "parquet"), SAMPLE, "append").table_rows == 6
    assert write(destination(tmp_path, "r3", "parquet"), SAMPLE, "replace").table_rows == 3


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_do_not_know_their_table_rows(tmp_path: Path, fmt: FileFormat) -> None:
    assert write(destination(tmp_path, "r1", fmt), SAMPLE, "append").table_rows is None


def test_two_appends_of_one_run_write_two_parts(tmp_path: Path) -> None:
    write(destination(tmp_path, "r1", "parquet"), SAMPLE, "append")
    second = write(destination(tmp_path, "r1", "parquet"), SAMPLE, "append")
    assert second.table_rows == 6
    assert parts(tmp_path / "data" / "out" / "orders") == ["part-r1-2.parquet", "part-r1.parquet"]


def test_format_comes_from_the_path_extension_or_defaults_to_parquet(tmp_path: Path) -> None:
    resources = RunResources(tmp_path, "r1")
    for path, fmt in [("o.csv", "csv"), ("o.ndjson", "jsonl"), ("o", "parquet")]:
        opened = open_destination(CONN, DestinationSpec(connection="f", path=path), resources)
        assert isinstance(opened, FilesDestination)
        assert opened.format == fmt


def test_parquet_prepare_rejects_intervals_early(tmp_path: Path) -> None:
    schema = TableSchema.from_arrow(pa.schema([("wait", pa.month_day_nano_interval())]))
    with pytest.raises(UnsupportedTypeError, match="Parquet cannot store"):
        destination(tmp_path, "r1", "parquet").prepare(schema)
    destination(tmp_path, "r1", "csv").prepare(schema)  # text formats write it as text


def test_parquet_part_stores_json_as_text(tmp_path: Path, data: Path) -> None:
    docs = pa.table({"id": [1], "doc": pa.array(['{"a": 1}'], pa.json_())})
    write(destination(tmp_path, "r1", "parquet"), docs, "append")
    stored = pq.read_table(data / "out" / "orders" / "part-r1.parquet")
    assert stored.schema.field("doc").type == pa.string()
    assert stored["doc"].to_pylist() == ['{"a": 1}']


def failing(table: pa.Table) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        yield from table.to_batches(1)[:2]
        raise Boom("source died midway")

    return pa.RecordBatchReader.from_batches(table.schema, batches())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", ["append", "replace"])
def test_a_failed_load_leaves_the_directory_as_it_was(
    tmp_path: Path, data: Path, fmt: FileFormat, mode: WriteMode
) -> None:
    write(destination(tmp_path, "r1", fmt), SAMPLE, "append")
    directory = data / "out" / "orders"
    with pytest.raises(Boom, match="source died midway"):  # the source's error is kept
        destination(tmp_path, "r2", fmt).load(failing(SAMPLE), mode, ())
    assert parts(directory) == [f"part-r1.{fmt}"]
    assert hidden_siblings(directory) == []
    assert len(read_back(tmp_path, fmt)) == 3


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_pipeline_syncs_into_a_files_destination(tmp_path: Path, fmt: str) -> None:
    from deltaflow import RunContext, RunStore, load_pipeline, run_pipeline

    (tmp_path / "data").mkdir(exist_ok=True)
    table = pa.table({"id": [1, 2, 3], "v": ["a", "b", None]})
    pq.write_table(table, tmp_path / "data" / "in.parquet")
    (tmp_path / "p.yml").write_text(
        "pipeline_id: p\n"
        "connections: {files: {type: files, base_path: data}}\n"
        "steps:\n"
        "  - step_id: copy\n"
        "    type: sync\n"
        "    source: {connection: files, path: in.parquet}\n"
        f"    destination: {{connection: files, path: out, format: {fmt}, write_mode: replace}}\n"
    )
    result = run_pipeline(
        load_pipeline(tmp_path / "p.yml"), context=RunContext(), store=RunStore(tmp_path / "r.db")
    )
    assert result.ok, result.error
    assert result.steps[0].rows_loaded == 3
    back = read_all(source(tmp_path, path=f"out/*.{fmt}"))
    assert sorted(back.column("id").to_pylist()) == [1, 2, 3]


def test_every_destination_takes_the_load_state_and_rejected_arguments() -> None:
    # The sync passes the incremental state and the quarantine callbacks to every
    # destination's load (MongoDB is a source only).
    import importlib
    import inspect

    from deltaflow.connectors import REGISTRY

    for kind, module_name in REGISTRY.items():
        module = importlib.import_module(f"deltaflow.connectors.{module_name}")
        if not hasattr(module, "open_destination"):
            continue
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass)]
        own = [c for c in classes if f"{c.__module__}.".startswith(f"{module.__name__}.")]
        loads = [c for c in own if hasattr(c, "load")]
        assert loads, kind
        for cls in loads:
            parameters = inspect.signature(cls.load).parameters
            assert {"state", "rejected"} <= set(parameters), f"{kind}: {cls.__name__}"
