"""Compare every warehouse table of the quickstart with its source files.

    python examples/quickstart/check.py [DIR]   # DIR holds warehouse.duckdb and data/

Exits 1 when a table's row count differs from its source or a primary key repeats.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

HERE = Path(__file__).parent
TABLES = {  # table: (source files, primary key)
    "raw.customers": ("data/customers.csv", "customer_id"),
    "raw.orders": ("data/orders.parquet", "order_id"),
    "raw.order_items": ("data/order_items/*.parquet", "order_item_id"),
    "raw.events": ("data/events.jsonl", "event_id"),
}


def main(root: Path) -> int:
    failures = 0
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    print(f"{'table':<18}{'source rows':>12}{'table rows':>12}{'distinct keys':>15}  check")
    for table, (files, key) in TABLES.items():
        source = duckdb.execute(f"SELECT count(*) FROM '{root / files}'").fetchone()
        row = con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table}").fetchone()
        assert source is not None
        assert row is not None
        ok = source[0] == row[0] == row[1]
        failures += not ok
        print(
            f"{table:<18}{source[0]:>12,}{row[0]:>12,}{row[1]:>15,}  {'ok' if ok else 'MISMATCH'}"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
