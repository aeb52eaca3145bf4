"""``deltaflow --help`` answers without loading the configuration models or the data plane."""

from __future__ import annotations

import subprocess
import sys

HEAVY = {"pydantic", "pyarrow", "duckdb", "deltaflow.config.models", "deltaflow.config.loader"}


def imported_by(*args: str) -> set[str]:
    """Every module a fresh ``python -m deltaflow *args`` imports (from -X importtime)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "deltaflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    names = {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # [0] is the header
    assert "deltaflow.cli" in names, done.stderr[-2000:]
    assert "Usage" in done.stdout
    return names


def test_help_imports_no_models_and_no_data_plane() -> None:
    names = imported_by("--help")
    assert {n for n in names if n in HEAVY or n.split(".")[0] in HEAVY} == set()


def test_a_command_help_loads_no_use_case_and_no_data_plane() -> None:
    # typer itself builds a command's parameters with pydantic, so only ours are checked
    names = imported_by("quarantine", "list", "--help")
    ours = HEAVY - {"pydantic"}
    assert {n for n in names if n in ours or n.split(".")[0] in ours} == set()
    assert not any(n.startswith("deltaflow.ops") for n in names)


def test_the_service_commands_help_loads_no_queue_and_no_database() -> None:
    for command in ("serve", "worker"):
        names = imported_by(command, "--help")
        heavy = {"procrastinate", "sqlalchemy", "psycopg", "fastapi", "uvicorn"}
        assert {n for n in names if n.split(".")[0] in heavy} == set(), command
