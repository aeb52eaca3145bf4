"""Finding pipeline files by id or path, and where a loaded pipeline says it came from."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deltaflow.config import find_pipeline, load_pipeline
from deltaflow.errors import ConfigError, PipelineNotFoundError

PIPELINE = """\
pipeline_id: {pipeline_id}
connections:
  warehouse: {{type: duckdb, path: warehouse.duckdb}}
steps:
  - step_id: copy
    type: sync
    source: {{connection: warehouse, table: src}}
    destination: {{connection: warehouse, table: dst}}
"""


def write(path: Path, pipeline_id: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = PIPELINE.format(pipeline_id=pipeline_id or path.stem)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def not_found(name: str, configs: Path | None = None) -> PipelineNotFoundError:
    with pytest.raises(PipelineNotFoundError) as info:
        find_pipeline(name, configs=configs)
    assert isinstance(info.value, ConfigError)
    assert info.value.code == "CONFIG_PIPELINE_NOT_FOUND"
    return info.value


# --------------------------------------------------------------------------- by id


@pytest.mark.parametrize("name", ["orders.yml", "orders.yaml", "sales/eu/orders.yml"])
def test_id_finds_the_file_anywhere_under_configs(tmp_path: Path, name: str) -> None:
    expected = write(tmp_path / "configs" / name)
    write(tmp_path / "configs" / "customers.yml")
    assert find_pipeline("orders", configs=tmp_path / "configs") == expected


def test_ambiguous_id_lists_every_match(tmp_path: Path) -> None:
    first = write(tmp_path / "eu" / "orders.yml")
    second = write(tmp_path / "us" / "orders.yaml")
    error = not_found("orders", tmp_path)
    assert error.message == f"pipeline id 'orders' matches 2 files: {first}, {second}"
    assert error.hint == "pass the file path instead of the id"


def test_unknown_id_suggests_the_closest(tmp_path: Path) -> None:
    write(tmp_path / "orders.yml")
    write(tmp_path / "nested" / "customers.yaml")
    error = not_found("ordres", tmp_path)
    assert error.message == f"no pipeline 'ordres' under '{tmp_path}'. Did you mean 'orders'?"
    assert error.hint == "pass a path, or --configs DIR (pipelines there: customers, orders)"


def test_unknown_id_in_an_empty_folder(tmp_path: Path) -> None:
    error = not_found("orders", tmp_path)
    assert error.message == f"no pipeline 'orders' under '{tmp_path}'."
    assert error.hint == "pass a path, or --configs DIR (pipelines there: none)"


def test_files_in_a_virtualenv_are_not_pipelines(tmp_path: Path) -> None:
    expected = write(tmp_path / "orders.yml")
    write(tmp_path / ".venv" / "lib" / "orders.yml")
    write(tmp_path / ".venv" / "lib" / "site.yml")
    assert find_pipeline("orders", configs=tmp_path) == expected
    assert "site" not in (not_found("sit", tmp_path).hint or "")


def test_configs_defaults_to_the_configs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "orders.yml")  # outside ./configs: not looked at when ./configs exists
    expected = write(tmp_path / "configs" / "orders.yml")
    monkeypatch.chdir(tmp_path)
    assert find_pipeline("orders") == expected.relative_to(tmp_path)


def test_configs_defaults_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "pipelines" / "orders.yml")
    monkeypatch.chdir(tmp_path)
    assert find_pipeline("orders") == Path("pipelines/orders.yml")


def test_a_folder_named_like_the_id_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = write(tmp_path / "configs" / "orders.yml")
    (tmp_path / "orders").mkdir()  # e.g. the pipeline's data folder
    monkeypatch.chdir(tmp_path)
    assert find_pipeline("orders") == expected.relative_to(tmp_path)


# --------------------------------------------------------------------------- by path


def test_path_is_returned_as_given(tmp_path: Path) -> None:
    path = write(tmp_path / "somewhere" / "orders.yml")
    write(tmp_path / "configs" / "orders.yml")
    assert find_pipeline(str(path), configs=tmp_path / "configs") == path


def test_existing_file_with_another_extension_is_a_path(tmp_path: Path) -> None:
    path = write(tmp_path / "orders.pipeline")
    assert find_pipeline(str(path)) == path


@pytest.mark.parametrize("name", ["nope.yml", "nope.yaml", "folder.yml"])
def test_path_that_does_not_exist(tmp_path: Path, name: str) -> None:
    (tmp_path / "folder.yml").mkdir()  # exists, but is no file
    missing = str(tmp_path / name)
    error = not_found(missing)
    assert error.message == f"pipeline file '{missing}' does not exist"
    assert error.hint == "check the path, or pass a pipeline id and --configs DIR"


# --------------------------------------------------------------------------- loading


def test_load_by_path_records_file_and_folder(tmp_path: Path) -> None:
    path = write(tmp_path / "team" / "orders.yml")
    loaded = load_pipeline(path)
    assert loaded.base_dir == tmp_path / "team"
    assert loaded.file == str(path)
    assert loaded.pipeline.pipeline_id == "orders"


def test_load_by_id_records_the_file_it_found(tmp_path: Path) -> None:
    path = write(tmp_path / "configs" / "eu" / "orders.yaml", pipeline_id="orders_eu")
    loaded = load_pipeline("orders", configs=tmp_path / "configs")
    assert loaded.base_dir == tmp_path / "configs" / "eu"
    assert loaded.file == str(path)
    assert loaded.pipeline.pipeline_id == "orders_eu"


def test_load_of_an_unknown_id_raises_not_found(tmp_path: Path) -> None:
    write(tmp_path / "orders.yml")
    with pytest.raises(PipelineNotFoundError, match="Did you mean 'orders'"):
        load_pipeline("order", configs=tmp_path)
