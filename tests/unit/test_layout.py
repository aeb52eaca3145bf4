"""The code's layout rules that the import-layer contract (pyproject.toml) cannot state:
small modules, one place that finds connectors by name, engine facts in the connectors."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "deltaflow"
CONNECTORS = SRC / "connectors"
MAX_LINES = 600


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules by role: {long}"


def test_only_the_registry_imports_a_connector_package_by_name() -> None:
    by_name = re.compile(r"import_module\(\s*f[\"']deltaflow\.connectors\.")
    found = [str(p.relative_to(SRC)) for p in modules() if by_name.search(p.read_text())]
    assert found == ["connectors/registry.py"]


def test_no_engine_name_branches_outside_the_connector_packages() -> None:
    engines = "duckdb|postgres|bigquery|mongodb|files"
    branch = re.compile(
        rf"kind\s*(==|!=)\s*[\"']({engines})[\"']|kind\s+(not\s+)?in\s*[(\[{{]\s*[\"']({engines})"
    )
    found = [
        f"{p.relative_to(SRC)}:{n}"
        for p in modules()
        if CONNECTORS not in p.parents
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if branch.search(line)
    ]
    assert not found, f"ask the connector (its Warehouse, its connection model) instead: {found}"
