"""The sample-data generators: shapes, value rules, determinism and file layout."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from deltaflow.sample_data import (
    EVENT_TYPES,
    _customers,
    events_batches,
    events_schema,
    write_events_parquet,
    write_quickstart,
)

ROWS = 20_000
EPOCH_2024 = datetime(2024, 1, 1, tzinfo=UTC)
US = 1_000_000


@pytest.fixture(scope="module")
def events() -> pa.Table:
    return pa.Table.from_batches(list(events_batches(ROWS, batch_rows=7_000)), events_schema())


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    write_quickstart(root)
    return root


def _micros(column: Any) -> pa.Array[Any]:
    micros: pa.Array[Any] = pc.cast(column, pa.int64()).combine_chunks()
    return micros


def _null_share(column: Any) -> float:
    return float(column.null_count) / len(column)


def _all(values: Any) -> bool:
    return bool(pc.all(values).as_py())


def test_events_schema() -> None:
    schema = events_schema()
    assert schema.names == [
        "id", "user_id", "event_type", "amount", "score", "is_active",
        "created_at", "updated_at", "payload", "tags", "note",
    ]  # fmt: skip
    required = {f.name for f in schema if not f.nullable}
    assert required == {"id", "user_id", "event_type", "created_at", "updated_at"}
    assert schema.field("id").type == pa.int64()
    assert schema.field("user_id").type == pa.int32()
    assert schema.field("amount").type == pa.decimal128(12, 2)
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("tags").type == pa.list_(pa.string())


def test_events_batches_sizes_and_ids() -> None:
    batches = list(events_batches(25, start_id=101, batch_rows=10))
    assert [b.num_rows for b in batches] == [10, 10, 5]
    ids = pa.Table.from_batches(batches)["id"].to_pylist()
    assert ids == list(range(101, 126))
    assert list(events_batches(0)) == []


def test_events_do_not_depend_on_batching(events: pa.Table) -> None:
    again = pa.Table.from_batches(list(events_batches(ROWS, batch_rows=ROWS)))
    assert again.equals(events)
    tail = pa.Table.from_batches(list(events_batches(100, start_id=ROWS - 99)))
    assert tail.equals(events.slice(ROWS - 100))
    other_seed = pa.Table.from_batches(list(events_batches(100, seed=1)))
    assert not other_seed.equals(events.slice(0, 100))


def test_events_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        next(events_batches(10, batch_rows=0))
    with pytest.raises(ValueError, match="rows"):
        write_events_parquet(tmp_path / "x.parquet", -1)
    assert not (tmp_path / "x.parquet").exists()


def test_events_timestamps(events: pa.Table) -> None:
    created = _micros(events["created_at"])
    expected = pc.add(pc.multiply(events["id"], 5 * US), int(EPOCH_2024.timestamp()) * US)
    assert created.equals(expected.combine_chunks())
    assert events["created_at"][0].as_py() == datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)
    lag = pc.subtract(_micros(events["updated_at"]), created)
    assert pc.min(lag).as_py() >= 0
    assert pc.max(lag).as_py() <= 3600 * US
    assert pc.count_distinct(pc.divide(lag, 3600 * US // 4)).as_py() == 4


def test_events_value_rules(events: pa.Table) -> None:
    assert events["id"].null_count == 0
    assert pc.min(events["user_id"]).as_py() >= 1
    assert pc.max(events["user_id"]).as_py() <= 100_000
    assert set(pc.unique(events["event_type"]).to_pylist()) == set(EVENT_TYPES)
    assert 0.18 < _null_share(events["amount"]) < 0.22
    assert 0.28 < _null_share(events["note"]) < 0.32
    lengths = pc.list_value_length(events["tags"])
    assert set(pc.unique(lengths).to_pylist()) == {0, 1, 2, 3}
    score = events["score"]
    assert pc.min(score).as_py() >= 0
    assert pc.max(score).as_py() < 100
    assert 0.75 < pc.mean(pc.cast(events["is_active"], pa.float64())).as_py() < 0.85


def test_events_amount_is_exact_cents(events: pa.Table) -> None:
    amounts = [a for a in events["amount"].to_pylist() if a is not None]
    assert all(a.as_tuple().exponent == -2 for a in amounts)
    assert min(amounts) >= Decimal("0.00")
    assert max(amounts) <= Decimal("9999.99")
    assert max(amounts) > Decimal("9900")
    text = pc.cast(events["amount"], pa.string()).to_pylist()
    assert all(t is None or re.fullmatch(r"\d{1,4}\.\d{2}", t) for t in text)
    assert [str(a) for a in amounts[:50]] == [t for t in text if t is not None][:50]


def test_events_payload_is_json(events: pa.Table) -> None:
    payloads = [str(p) for p in events["payload"].to_pylist()]
    keys = {"device", "country", "session", "version", "referrer"}
    parsed = [json.loads(p) for p in payloads]
    assert all(set(p) == keys for p in parsed)
    assert 80 <= sum(map(len, payloads)) / len(payloads) <= 110
    assert all(re.fullmatch(r"s-\d{6}", p["session"]) for p in parsed[:100])


def test_write_events_parquet_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    assert write_events_parquet(path, 250_000, row_group_rows=100_000) == 250_000
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 250_000
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [
        100_000,
        100_000,
        50_000,
    ]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    head = pq.read_table(path).slice(0, 1_000)
    assert head.schema.equals(events_schema())
    assert head.equals(pa.Table.from_batches(list(events_batches(1_000))))


def test_quickstart_is_byte_identical(shop: Path, tmp_path: Path) -> None:
    counts = write_quickstart(tmp_path / "again")
    assert counts == {
        "customers": 10_000,
        "orders": 60_000,
        "order_items": 150_000,
        "events": 80_000,
    }
    assert sum(counts.values()) == 300_000
    files = sorted(p.relative_to(shop) for p in shop.rglob("*") if p.is_file())
    assert [str(f) for f in files] == [
        "customers.csv",
        "events.jsonl",
        "order_items/part-0000.parquet",
        "order_items/part-0001.parquet",
        "order_items/part-0002.parquet",
        "order_items/part-0003.parquet",
        "orders.parquet",
    ]
    for name in files:
        assert (shop / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_quickstart_seed_changes_output() -> None:
    assert not _customers(8).equals(_customers(7))
    assert _customers(7).equals(_customers(7))


def test_quickstart_customers(shop: Path) -> None:
    customers = pacsv.read_csv(shop / "customers.csv")
    assert customers.num_rows == 10_000
    assert customers["customer_id"].to_pylist() == list(range(1, 10_001))
    assert pc.count_distinct(customers["email"]).as_py() == 10_000
    assert customers["email"][41].as_py() == "customer00042@example.com"
    assert customers.schema.field("signup_at").type == pa.timestamp("ns", tz="UTC")
    assert customers.schema.field("is_vip").type == pa.bool_()
    assert len(pc.unique(customers["country"])) == 12
    text = (shop / "customers.csv").read_text().splitlines()[1]
    assert re.fullmatch(
        r'1,"customer00001@example\.com","[A-Za-z ]+","[A-Z]{2}",.+,\d+\.\d{2}', text
    )


def test_quickstart_orders(shop: Path) -> None:
    orders = pq.read_table(shop / "orders.parquet")
    customers = pacsv.read_csv(shop / "customers.csv")
    assert orders.num_rows == 60_000
    assert pc.count_distinct(orders["order_id"]).as_py() == 60_000
    assert _all(pc.is_in(orders["customer_id"], value_set=customers["customer_id"]))
    assert orders.schema.field("order_total").type == pa.decimal128(12, 2)
    assert orders.schema.field("ordered_at").type == pa.timestamp("us", tz="UTC")
    assert _all(pc.greater_equal(orders["updated_at"], orders["ordered_at"]))
    assert set(pc.unique(orders["currency"]).to_pylist()) == {"EUR", "USD", "GBP"}
    statuses = {"placed", "paid", "shipped", "delivered", "cancelled", "returned"}
    assert set(pc.unique(orders["status"]).to_pylist()) == statuses


def test_quickstart_order_items(shop: Path) -> None:
    parts = sorted((shop / "order_items").glob("part-*.parquet"))
    items = pa.concat_tables(pq.read_table(p) for p in parts)
    orders = pq.read_table(shop / "orders.parquet")
    assert len(parts) == 4
    assert items.num_rows == 150_000
    assert pc.count_distinct(items["order_item_id"]).as_py() == 150_000
    assert _all(pc.is_in(items["order_id"], value_set=orders["order_id"]))
    assert items.schema.field("quantity").type == pa.int32()
    assert items.schema.field("unit_price").type == pa.decimal128(10, 2)
    assert (pc.min(items["quantity"]).as_py(), pc.max(items["quantity"]).as_py()) == (1, 5)
    assert 0 < items["discount"].null_count < items.num_rows
    assert 0 <= pc.min(items["discount"]).as_py() <= pc.max(items["discount"]).as_py() <= 0.3
    assert _all(pc.match_substring_regex(items["sku"], r"^SKU-\d{5}$"))


def test_quickstart_events_jsonl(shop: Path) -> None:
    events = pajson.read_json(shop / "events.jsonl")
    customers = pacsv.read_csv(shop / "customers.csv")
    assert events.num_rows == 80_000
    assert pc.count_distinct(events["event_id"]).as_py() == 80_000
    assert pa.types.is_struct(events.schema.field("properties").type)
    assert events.schema.field("amount").type == pa.float64()
    assert 0.65 < _null_share(events["amount"]) < 0.75
    assert _all(pc.is_in(events["customer_id"], value_set=customers["customer_id"]))
    iso = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"
    assert _all(pc.match_substring_regex(events["occurred_at"], iso))
    first = json.loads((shop / "events.jsonl").read_text().splitlines()[0])
    assert set(first) == {
        "event_id", "customer_id", "event_type", "occurred_at", "properties", "amount",
    }  # fmt: skip
    assert 2 <= len(first["properties"]) <= 3
