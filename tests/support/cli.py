"""The ``deltaflow`` command as a user runs it: a fresh interpreter, output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(cwd: Path, *args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    """``deltaflow *args`` in ``cwd``, ``answer`` on standard input; tables 200 columns
    wide so that nothing is cut."""
    return subprocess.run(
        [sys.executable, "-m", "deltaflow", *args],
        cwd=cwd,
        input=answer,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
        check=False,
    )
