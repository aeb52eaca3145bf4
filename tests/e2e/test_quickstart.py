"""The quickstart as a user runs it: generate the data, run the pipeline twice, check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_quickstart_loads_every_table_and_a_second_run_adds_no_duplicate(
    tmp_path: Path,
) -> None:
    shutil.copy(EXAMPLE / "quickstart.yml", tmp_path)
    run("-m", "deltaflow.sample_data", "quickstart", "data", cwd=tmp_path)

    first = run("-m", "deltaflow", "run", "quickstart.yml", cwd=tmp_path)
    second = run("-m", "deltaflow", "run", "quickstart.yml", cwd=tmp_path)
    check = run(str(EXAMPLE / "check.py"), str(tmp_path), cwd=tmp_path)

    assert "quickstart: succeeded" in first.stdout
    assert check.stdout.count(" ok") == 4, check.stdout
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        counts = {
            t: con.execute(f"SELECT count(*) FROM raw.{t}").fetchone()
            for t in ("customers", "orders", "order_items", "events")
        }
    assert counts == {
        "customers": (10_000,),
        "orders": (60_000,),
        "order_items": (150_000,),
        "events": (80_000,),
    }
    # the second run merged: every row was an update, none an insert
    orders_line = next(line for line in second.stdout.splitlines() if "│ orders" in line)
    assert orders_line.split("│")[7].strip() == "0"  # inserted
    assert orders_line.split("│")[8].strip() == "60,000"  # updated
