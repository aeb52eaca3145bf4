"""Deterministic sample datasets: the ``events`` benchmark shape and the quickstart shop.

Every value is a pure function of ``(seed, column, row id)``: a counter-based generator
(the SplitMix64 finaliser, evaluated with Arrow compute kernels) replaces a stateful
random stream, so output never depends on how rows are split into batches or files.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Sequence
from itertools import accumulate, combinations
from math import comb
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import pyarrow as pa

    Arr: TypeAlias = pa.Array[Any]

__all__ = [
    "EVENT_TYPES",
    "QUICKSTART_ROWS",
    "events_batches",
    "events_schema",
    "write_events_parquet",
    "write_quickstart",
]

_U64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

_US = 1_000_000
_DAY_US = 86_400 * _US
_EPOCH_2022_US = 1_640_995_200 * _US
_EPOCH_2024_US = 1_704_067_200 * _US

EVENT_TYPES = (
    "page_view", "click", "add_to_cart", "remove_from_cart", "checkout",
    "purchase", "refund", "signup", "login", "logout",
)  # fmt: skip
_EVENT_WEIGHTS = (40, 20, 8, 3, 5, 5, 1, 2, 10, 6)
_DEVICES = ("ios", "android", "web", "desktop")
_COUNTRIES = ("DE", "US", "GB", "FR", "NL", "ES", "IT", "SE", "PL", "CA", "AU", "JP")
_COUNTRY_WEIGHTS = (20, 25, 12, 9, 6, 6, 5, 4, 4, 4, 3, 2)
_VERSIONS = ("3.1.0", "3.1.4", "3.2.0", "3.2.1", "3.3.0", "4.0.0")
_REFERRERS = ("google", "direct", "newsletter", "facebook", "bing", "partner")
_TAGS = ("new", "mobile", "promo", "returning", "beta", "mobile-web")
_NOTES = (
    "first visit", "gift order", "support ticket open", "price alert",
    "came from campaign", "slow page load", "coupon applied",
)  # fmt: skip
_FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas",
    "Kira", "Liam", "Mia", "Noah", "Olivia", "Paul", "Rosa", "Sam", "Tara", "Yusuf",
)  # fmt: skip
_LAST_NAMES = (
    "Schmidt", "Smith", "Garcia", "Rossi", "Dubois", "Jansen", "Nowak", "Berg",
    "Tanaka", "Brown", "Martin", "Keller", "Silva", "Novak", "Walsh", "Moreau",
)  # fmt: skip
_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
_STATUS_WEIGHTS = (6, 8, 14, 58, 8, 6)
_CURRENCIES = ("EUR", "USD", "GBP")
_CURRENCY_WEIGHTS = (60, 30, 10)
_QUANTITY_WEIGHTS = (55, 22, 11, 7, 5)
_SHOP_EVENTS = (
    "page_view", "search", "click", "add_to_cart", "checkout", "purchase", "refund",
)  # fmt: skip
_SHOP_EVENT_WEIGHTS = (42, 16, 12, 12, 8, 8, 2)
_MONEY_EVENTS = ("add_to_cart", "checkout", "purchase", "refund")
_CAMPAIGNS = ("spring_sale", "black_friday", "newsletter_07", "retargeting")

QUICKSTART_ROWS = {"customers": 10_000, "orders": 60_000, "order_items": 150_000, "events": 80_000}
_ORDER_ITEM_FILES = 4


def _mix_int(value: int) -> int:
    """SplitMix64 finaliser on a Python int."""
    z = value & _U64
    z = ((z ^ (z >> 30)) * _MIX1) & _U64
    z = ((z ^ (z >> 27)) * _MIX2) & _U64
    return z ^ (z >> 31)


def _mix(values: Arr) -> Arr:
    """SplitMix64 finaliser on a uint64 array (multiplication wraps modulo 2**64)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    z = values
    for shift, factor in ((30, _MIX1), (27, _MIX2)):
        z = pc.bit_wise_xor(z, pc.shift_right(z, pa.scalar(shift, pa.uint64())))
        z = pc.multiply(z, pa.scalar(factor, pa.uint64()))
    return pc.bit_wise_xor(z, pc.shift_right(z, pa.scalar(31, pa.uint64())))


def _arange(start: int, count: int) -> Arr:
    """int64 array ``start, start + 1, ..., start + count - 1``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ones = pa.repeat(pa.scalar(1, pa.int64()), count)
    return pc.add(pc.cumulative_sum(ones), pa.scalar(start - 1, pa.int64()))


class _Rng:
    """Counter-based random columns keyed by row id, seed and a stream name."""

    def __init__(self, ids: Arr, seed: int, namespace: str) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self._keys = pc.multiply(
            pc.cast(ids, pa.uint64(), safe=False), pa.scalar(_GOLDEN, pa.uint64())
        )
        self._seed = seed
        self._namespace = namespace

    def bits(self, stream: str) -> Arr:
        """64 random bits per row."""
        import pyarrow as pa
        import pyarrow.compute as pc

        salt = zlib.crc32(f"{self._namespace}.{stream}".encode())
        offset = _mix_int(_mix_int(self._seed) ^ salt)
        return _mix(pc.add(self._keys, pa.scalar(offset, pa.uint64())))

    def uniform(self, stream: str) -> Arr:
        """float64 uniform on [0, 1)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        top = pc.shift_right(self.bits(stream), pa.scalar(11, pa.uint64()))
        return pc.multiply(pc.cast(top, pa.float64()), 2.0**-53)

    def integers(self, stream: str, low: int, high: int) -> Arr:
        """int64 uniform on ``[low, high]`` (64 random bits modulo the span)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        span = high - low + 1
        if not 0 < span < 1 << 63:
            raise ValueError(f"bad integer range [{low}, {high}]")
        bits = self.bits(stream)
        divisor = pa.scalar(span, pa.uint64())
        whole = pc.multiply(pc.divide(bits, divisor), divisor)
        offsets = pc.cast(pc.subtract(bits, whole), pa.int64())
        return pc.add(offsets, pa.scalar(low, pa.int64()))

    def mask(self, stream: str, probability: float) -> Arr:
        """bool array, true with the given probability."""
        import pyarrow as pa
        import pyarrow.compute as pc

        return pc.less(self.uniform(stream), pa.scalar(probability))

    def choice(self, stream: str, values: Sequence[Any], weights: Sequence[int] = ()) -> Arr:
        """Values drawn with integer weights (uniform when no weights)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        counts = weights or [1] * len(values)
        table = [value for value, count in zip(values, counts, strict=True) for _ in range(count)]
        drawn: Arr = pc.take(pa.array(table), self.integers(stream, 0, len(table) - 1))
        return drawn


def _with_nulls(values: Arr, null_mask: Arr) -> Arr:
    """``values`` with nulls where ``null_mask`` is true."""
    import pyarrow as pa
    import pyarrow.compute as pc

    result: Arr = pc.if_else(null_mask, pa.scalar(None, values.type), values)
    return result


def _cents_to_decimal(cents: Arr, precision: int) -> Arr:
    """Exact ``decimal128(precision, 2)`` from integer cents (reinterpreted, not divided)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wide = pc.cast(cents, pa.decimal128(19, 0)).view(pa.decimal128(19, 2))
    return pc.cast(wide, pa.decimal128(precision, 2))


def _timestamps(micros: Arr) -> Arr:
    """UTC microsecond timestamps from epoch microseconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(micros, pa.timestamp("us", tz="UTC"))


def _text(values: Arr, width: int = 0) -> Arr:
    """Integers as strings, zero-padded to ``width``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(values, pa.string())
    return pc.utf8_lpad(text, width=width, padding="0") if width else text


def _join(*parts: Arr | str) -> Arr:
    """Element-wise concatenation of string arrays and literals."""
    import pyarrow.compute as pc

    joined: Arr = pc.call_function("binary_join_element_wise", [*parts, ""])
    return joined


def _tag_lists(rng: _Rng) -> Arr:
    """list<string> of 0-3 distinct tags: a length, then one combination of that length."""
    import pyarrow as pa
    import pyarrow.compute as pc

    combos = [list(c) for size in range(4) for c in combinations(_TAGS, size)]
    counts = [comb(len(_TAGS), size) for size in range(4)]
    starts = [0, *accumulate(counts[:-1])]
    size = rng.choice("tags.size", range(4), (30, 35, 25, 10))
    within = pc.cast(
        pc.floor(pc.multiply(rng.uniform("tags.pick"), pc.take(pa.array(counts), size))),
        pa.int64(),
    )
    index = pc.add(pc.take(pa.array(starts, pa.int64()), size), within)
    return pc.take(pa.array(combos, pa.list_(pa.string())), index)


def events_schema() -> pa.Schema:
    """Arrow schema of the ``events`` dataset."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    fields: list[pa.Field[Any]] = [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("user_id", pa.int32(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("amount", pa.decimal128(12, 2)),
        pa.field("score", pa.float64()),
        pa.field("is_active", pa.bool_()),
        pa.field("created_at", ts, nullable=False),
        pa.field("updated_at", ts, nullable=False),
        pa.field("payload", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("note", pa.string()),
    ]
    return pa.schema(fields)


def _payload(rng: _Rng) -> Arr:
    """JSON object text with five string keys, about 100 bytes."""
    return _join(
        '{"device":"',
        rng.choice("payload.device", _DEVICES, (35, 35, 20, 10)),
        '","country":"',
        rng.choice("payload.country", _COUNTRIES, _COUNTRY_WEIGHTS),
        '","session":"s-',
        _text(rng.integers("payload.session", 0, 999_999), 6),
        '","version":"',
        rng.choice("payload.version", _VERSIONS),
        '","referrer":"',
        rng.choice("payload.referrer", _REFERRERS),
        '"}',
    )


def _events_batch(first_id: int, count: int, seed: int) -> pa.RecordBatch:
    """Rows ``first_id .. first_id + count - 1`` of the ``events`` dataset."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = _arange(first_id, count)
    rng = _Rng(ids, seed, "events")
    created = pc.add(pc.multiply(ids, 5 * _US), _EPOCH_2024_US)
    amount = _with_nulls(rng.integers("amount", 0, 999_999), rng.mask("amount.null", 0.2))
    columns = [
        ids,
        pc.cast(rng.integers("user_id", 1, 100_000), pa.int32()),
        rng.choice("event_type", EVENT_TYPES, _EVENT_WEIGHTS),
        _cents_to_decimal(amount, 12),
        pc.round(pc.multiply(rng.uniform("score"), 100.0), 4),
        rng.mask("is_active", 0.8),
        _timestamps(created),
        _timestamps(pc.add(created, rng.integers("updated_at", 0, 3600 * _US))),
        _payload(rng),
        _tag_lists(rng),
        _with_nulls(rng.choice("note", _NOTES), rng.mask("note.null", 0.3)),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=events_schema())


def _check_sizes(rows: int, batch_rows: int) -> None:
    if rows < 0 or batch_rows < 1:
        raise ValueError(f"need rows >= 0 and batch_rows >= 1, got {rows} and {batch_rows}")


def events_batches(
    rows: int, *, start_id: int = 1, batch_rows: int = 100_000, seed: int = 42
) -> Iterator[pa.RecordBatch]:
    """Yield ``rows`` events with ids from ``start_id``, at most ``batch_rows`` per batch."""
    _check_sizes(rows, batch_rows)
    for offset in range(0, rows, batch_rows):
        yield _events_batch(start_id + offset, min(batch_rows, rows - offset), seed)


def write_events_parquet(
    path: str | os.PathLike[str], rows: int, *, row_group_rows: int = 100_000, seed: int = 42
) -> int:
    """Stream ``rows`` events into one zstd Parquet file, one row group per batch."""
    import pyarrow.parquet as pq

    _check_sizes(rows, row_group_rows)
    written = 0
    with pq.ParquetWriter(os.fspath(path), events_schema(), compression="zstd") as writer:
        for batch in events_batches(rows, batch_rows=row_group_rows, seed=seed):
            writer.write_batch(batch, row_group_size=row_group_rows)
            written += batch.num_rows
    return written


def _spread(ids: Arr, rng: _Rng, start_us: int, span_us: int, rows: int) -> Arr:
    """Epoch microseconds rising with the id over ``span_us``, jittered within one step."""
    import pyarrow.compute as pc

    step = span_us // rows
    base = pc.add(pc.multiply(pc.subtract(ids, 1), step), start_us)
    return pc.add(base, rng.integers("spread", 0, step - 1))


def _customers(seed: int) -> pa.Table:
    """The quickstart ``customers`` table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = QUICKSTART_ROWS["customers"]
    ids = _arange(1, rows)
    rng = _Rng(ids, seed, "customers")
    vip = rng.mask("is_vip", 0.08)
    value = pc.add(
        rng.integers("lifetime_value", 0, 250_000), pc.if_else(vip, pa.scalar(750_000), 0)
    )
    return pa.table(
        {
            "customer_id": ids,
            "email": _join("customer", _text(ids, 5), "@example.com"),
            "full_name": _join(
                rng.choice("first_name", _FIRST_NAMES), " ", rng.choice("last_name", _LAST_NAMES)
            ),
            "country": rng.choice("country", _COUNTRIES, _COUNTRY_WEIGHTS),
            "signup_at": _timestamps(_spread(ids, rng, _EPOCH_2022_US, 730 * _DAY_US, rows)),
            "is_vip": vip,
            "lifetime_value": _cents_to_decimal(value, 12),
        }
    )


def _orders(seed: int) -> pa.Table:
    """The quickstart ``orders`` table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = QUICKSTART_ROWS["orders"]
    ids = _arange(1, rows)
    rng = _Rng(ids, seed, "orders")
    ordered = _spread(ids, rng, _EPOCH_2024_US, 366 * _DAY_US, rows)
    return pa.table(
        {
            "order_id": ids,
            "customer_id": rng.integers("customer_id", 1, QUICKSTART_ROWS["customers"]),
            "status": rng.choice("status", _STATUSES, _STATUS_WEIGHTS),
            "order_total": _cents_to_decimal(rng.integers("order_total", 500, 60_000), 12),
            "currency": rng.choice("currency", _CURRENCIES, _CURRENCY_WEIGHTS),
            "ordered_at": _timestamps(ordered),
            "updated_at": _timestamps(pc.add(ordered, rng.integers("updated", 0, 14 * _DAY_US))),
        }
    )


def _order_items(seed: int) -> pa.Table:
    """The quickstart ``order_items`` table (all parts)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = _arange(1, QUICKSTART_ROWS["order_items"])
    rng = _Rng(ids, seed, "order_items")
    discount = pc.round(pc.multiply(rng.uniform("discount"), 0.3), 2)
    return pa.table(
        {
            "order_item_id": ids,
            "order_id": rng.integers("order_id", 1, QUICKSTART_ROWS["orders"]),
            "sku": _join("SKU-", _text(rng.integers("sku", 1, 2_500), 5)),
            "quantity": rng.choice("quantity", range(1, 6), _QUANTITY_WEIGHTS).cast(pa.int32()),
            "unit_price": _cents_to_decimal(rng.integers("unit_price", 199, 19_999), 10),
            "discount": _with_nulls(discount, rng.mask("discount.null", 0.6)),
        }
    )


def _event_lines(seed: int) -> Arr:
    """The quickstart ``events`` as JSON Lines, one newline-terminated string per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = QUICKSTART_ROWS["events"]
    ids = _arange(1, rows)
    rng = _Rng(ids, seed, "shop_events")
    event_type = rng.choice("event_type", _SHOP_EVENTS, _SHOP_EVENT_WEIGHTS)
    occurred = _timestamps(_spread(ids, rng, _EPOCH_2024_US, 366 * _DAY_US, rows))
    campaign = pc.if_else(
        rng.mask("campaign.present", 0.35),
        _join(',"campaign":"', rng.choice("campaign", _CAMPAIGNS), '"'),
        "",
    )
    properties = _join(
        '{"page":"/p/',
        _text(rng.integers("page", 1, 2_500)),
        '","device":"',
        rng.choice("device", _DEVICES, (35, 35, 20, 10)),
        '"',
        campaign,
        "}",
    )
    money = pc.is_in(event_type, value_set=pa.array(_MONEY_EVENTS))
    amount = _with_nulls(rng.integers("amount", 100, 50_000), pc.invert(money))
    amount_text = _cents_to_decimal(amount, 12).cast(pa.string()).fill_null("null")
    return _join(
        '{"event_id":',
        _text(ids),
        ',"customer_id":',
        _text(rng.integers("customer_id", 1, QUICKSTART_ROWS["customers"])),
        ',"event_type":"',
        event_type,
        '","occurred_at":"',
        pc.strftime(occurred, format="%Y-%m-%dT%H:%M:%SZ", locale="C"),
        '","properties":',
        properties,
        ',"amount":',
        amount_text,
        "}\n",
    )


def _write_text(path: Path, lines: Arr) -> None:
    """Write the concatenation of a string array to ``path``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    single = pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines)
    text: str = pc.call_function("binary_join", [single, ""])[0].as_py()
    path.write_bytes(text.encode())


def write_quickstart(directory: str | os.PathLike[str], *, seed: int = 7) -> dict[str, int]:
    """Write the quickstart shop into ``directory``; return rows per dataset."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    root = Path(directory)
    (root / "order_items").mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(_customers(seed), str(root / "customers.csv"))
    pq.write_table(_orders(seed), root / "orders.parquet", compression="zstd")
    items = _order_items(seed)
    part_rows = -(-items.num_rows // _ORDER_ITEM_FILES)
    for part in range(_ORDER_ITEM_FILES):
        chunk = items.slice(part * part_rows, part_rows)
        pq.write_table(chunk, root / "order_items" / f"part-{part:04d}.parquet", compression="zstd")
    _write_text(root / "events.jsonl", _event_lines(seed))
    return dict(QUICKSTART_ROWS)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m deltaflow.sample_data quickstart DIR | events FILE ROWS``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m deltaflow.sample_data", description="Write DeltaFlow's sample datasets."
    )
    sub = parser.add_subparsers(dest="dataset", required=True)
    sub.add_parser("quickstart", help="the quickstart shop (300,000 rows)").add_argument("dir")
    events = sub.add_parser("events", help="the benchmark's events table as Parquet")
    events.add_argument("file")
    events.add_argument("rows", type=int)
    args = parser.parse_args(argv)
    if args.dataset == "quickstart":
        counts = write_quickstart(args.dir)
        (Path(args.dir) / ".complete").write_text("")
        print(", ".join(f"{name}: {rows:,} rows" for name, rows in counts.items()))
    else:
        print(f"{write_events_parquet(args.file, args.rows):,} rows written to {args.file}")


if __name__ == "__main__":
    main()
