#!/usr/bin/env bash
# Create benchmarks/.venv-dlt, a virtualenv of its own for the dlt peer benchmark
# (benchmarks/dlt_peer.py), and install the pinned versions below from PyPI. dlt is not a
# dependency of DeltaFlow and is never installed into .venv.
#
#   bash benchmarks/setup_dlt.sh
#   benchmarks/.venv-dlt/bin/python benchmarks/dlt_peer.py --help
#
# Safe to rerun: it does nothing when dlt imports in the venv and every pin is installed.
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv-dlt

# Verified together on Python 3.11 (2026-11-22). duckdb and pyarrow are pinned to the
# versions DeltaFlow's own .venv runs, so both sides load with the same engine and writer.
# SQLAlchemy 2.1 maps postgresql:// to psycopg (v3), so that is the driver dlt's table
# reflection needs; connectorx has its own Rust PostgreSQL client. The local filesystem
# destination needs only fsspec (a dlt dependency): the `filesystem` extra is s3fs/botocore.
pins=(
  "dlt[duckdb,parquet,sql_database]==1.31.0"
  "connectorx==0.4.6"
  "duckdb==1.5.6"
  "pyarrow==25.0.1"
  "sqlalchemy==2.1.9"
  "psycopg[binary]==3.3.9"
)

python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    python=$candidate; break
  fi
done
if [ -z "$python" ]; then
  python=python3
  echo "warning: Python 3.11 not found; using $($python --version 2>&1)" >&2
fi

check='
import importlib.metadata as m, re, sys
import dlt  # must import, not just be present
for pin in sys.argv[1:]:
    name, version = re.sub(r"\[.*\]", "", pin).split("==")
    if m.version(name) != version:
        sys.exit(f"{name} {m.version(name)} != {version}")
'

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" "${pins[@]}" >/dev/null 2>&1; then
  echo "benchmarks/$venv is ready (dlt $("$venv/bin/python" -c 'import dlt; print(dlt.__version__)'))"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "${pins[@]}"
"$venv/bin/python" -c "$check" "${pins[@]}"
echo "benchmarks/$venv installed (dlt $("$venv/bin/python" -c 'import dlt; print(dlt.__version__)'))"
