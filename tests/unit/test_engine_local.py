"""The local engine's scheduling: order, bounded memory, errors and early close.

These tests use a fake in-memory Source on purpose: what is under test is how the engine
schedules reader threads and hands batches on, so the source only needs to yield tagged
batches with controllable timing and count what it has produced. The real sources are
tested against real files and databases in the test_connector_* modules.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pytest

from deltaflow.connectors.protocol import Split
from deltaflow.engine.local import QUEUE_DEPTH, READER_NICENESS, SHARED_DEPTH, read_splits
from deltaflow.schema.types import TableSchema

SCHEMA = pa.schema([pa.field("split", pa.int64()), pa.field("batch", pa.int64())])


class Boom(RuntimeError):
    pass


@dataclass
class FakeSource:
    """Yields ``batches`` tagged batches per split, after ``delay(split, batch)`` seconds.

    Counts batches produced, splits opened and splits whose reader was closed, under a lock
    because the engine reads splits on several threads.
    """

    batches: int | None = 3  # None: never ends
    delay: Callable[[int, int], float] = lambda split, batch: 0.0
    fail_at: tuple[int, int] | None = None  # (split, batch) that raises Boom
    name: str = "fake"
    produced: int = 0
    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def discover(self) -> TableSchema:
        return TableSchema.from_arrow(SCHEMA)

    def splits(self) -> list[Split]:
        raise NotImplementedError  # the tests pass splits to read_splits themselves

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        with self.lock:
            self.opened.append(split.index)
        try:
            number = 0
            while self.batches is None or number < self.batches:
                time.sleep(self.delay(split.index, number))
                if self.fail_at == (split.index, number):
                    raise Boom(f"split {split.index} failed at batch {number}")
                with self.lock:
                    self.produced += 1
                yield pa.record_batch([[split.index], [number]], schema=SCHEMA)
                number += 1
        finally:
            with self.lock:
                self.closed.append(split.index)


def make_splits(count: int) -> list[Split]:
    return [Split(i) for i in range(count)]


def tags(batches: Iterator[pa.RecordBatch]) -> list[tuple[int, int]]:
    return [(b.column(0)[0].as_py(), b.column(1)[0].as_py()) for b in batches]


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("deltaflow-read")]


def wait_for_no_reader_threads(timeout: float = 2.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    while reader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return reader_threads()


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    assert not wait_for_no_reader_threads(), "a previous test left reader threads"
    yield
    assert not wait_for_no_reader_threads()


@pytest.mark.parametrize("parallelism", [1, 2, 4, 8])
def test_batches_come_in_split_order_whatever_the_timing(parallelism: int) -> None:
    # Early splits are the slowest, so with parallelism > 1 later splits finish first.
    source = FakeSource(batches=3, delay=lambda split, batch: 0.002 * ((7 - split) % 8))
    out = tags(read_splits(source, make_splits(8), parallelism))
    assert out == [(s, b) for s in range(8) for b in range(3)]


def test_splits_are_read_in_parallel() -> None:
    # Four splits of 0.1 s each: sequential reading would take 0.4 s.
    source = FakeSource(batches=1, delay=lambda split, batch: 0.1)
    started = time.monotonic()
    out = tags(read_splits(source, make_splits(4), 4))
    assert out == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert time.monotonic() - started < 0.3


def test_on_batch_sees_every_batch_in_order() -> None:
    source = FakeSource(batches=2, delay=lambda split, batch: 0.001 * (3 - split))
    seen: list[pa.RecordBatch] = []
    out = tags(read_splits(source, make_splits(4), 3, on_batch=seen.append))
    assert tags(iter(seen)) == out
    assert len(out) == 8


def thread_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.parametrize("ordered", [True, False])
def test_readers_run_below_the_consumer(ordered: bool) -> None:
    # The consumer (this thread) keeps its priority; every reader runs at READER_NICENESS,
    # so that the serial consumer is not starved by its own readers on a small machine.
    seen: list[int] = []

    class Recording(FakeSource):
        def read(self, split: Split) -> Iterator[pa.RecordBatch]:
            seen.append(thread_niceness())
            yield from super().read(split)

    before = thread_niceness()
    assert before < READER_NICENESS
    assert len(list(read_splits(Recording(batches=1), make_splits(4), 2, ordered=ordered))) == 4
    assert seen == [READER_NICENESS] * 4
    assert thread_niceness() == before


def test_no_splits_yields_nothing() -> None:
    assert list(read_splits(FakeSource(), [], 4)) == []


def test_parallelism_below_one_still_reads() -> None:
    out = tags(read_splits(FakeSource(batches=2), make_splits(2), 0))
    assert out == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_memory_is_bounded(parallelism: int) -> None:
    # Fast producers, slow consumer: readers run ahead until their queues are full.
    source = FakeSource(batches=40)
    consumed = 0
    most_outstanding = 0
    for _ in read_splits(source, make_splits(6), parallelism):
        consumed += 1
        with source.lock:
            most_outstanding = max(most_outstanding, source.produced - consumed)
        time.sleep(0.002)
    assert consumed == 6 * 40
    bound = parallelism * QUEUE_DEPTH + parallelism
    assert most_outstanding <= bound
    # The bound is not vacuous: the readers did read ahead of the consumer.
    assert most_outstanding >= QUEUE_DEPTH


def test_an_error_in_a_split_reaches_the_consumer_after_earlier_batches() -> None:
    source = FakeSource(batches=3, fail_at=(2, 1))
    received: list[pa.RecordBatch] = []
    with pytest.raises(Boom, match="split 2 failed at batch 1"):
        list(read_splits(source, make_splits(5), 2, on_batch=received.append))
    assert tags(iter(received)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert not wait_for_no_reader_threads()


def test_an_error_in_a_later_split_waits_for_the_earlier_ones() -> None:
    # Split 1 fails at once while split 0 is still slowly producing: the consumer still
    # gets all of split 0 first, so errors surface in the same place on every run.
    source = FakeSource(
        batches=3, delay=lambda split, batch: 0.02 if split == 0 else 0.0, fail_at=(1, 0)
    )
    received: list[pa.RecordBatch] = []
    with pytest.raises(Boom):
        list(read_splits(source, make_splits(3), 2, on_batch=received.append))
    assert tags(iter(received)) == [(0, 0), (0, 1), (0, 2)]


def test_closing_early_stops_the_readers() -> None:
    # Endless splits: only the stop signal can end the reader threads.
    source = FakeSource(batches=None)
    batches = read_splits(source, make_splits(10), 3)
    first = [next(batches) for _ in range(5)]
    assert tags(iter(first)) == [(0, i) for i in range(5)]
    assert reader_threads()
    batches.close()
    assert not wait_for_no_reader_threads(timeout=1.0)
    with source.lock:
        opened, closed = sorted(source.opened), sorted(source.closed)
    assert opened == closed  # every split reader that was opened was also closed
    assert 0 in opened
    assert set(opened) <= {0, 1, 2}  # splits not yet due were never opened


def test_abandoning_after_an_error_does_not_open_remaining_splits() -> None:
    source = FakeSource(batches=1, fail_at=(0, 0))
    with pytest.raises(Boom):
        list(read_splits(source, make_splits(50), 2))
    assert not wait_for_no_reader_threads()
    with source.lock:
        assert sorted(source.opened) in ([0], [0, 1])


# Unordered reads: batches in arrival order, every reader kept busy.


def test_unordered_delivers_every_batch_once() -> None:
    source = FakeSource(batches=5, delay=lambda split, batch: 0.001 * ((5 - split) % 4))
    out = tags(read_splits(source, make_splits(7), 3, ordered=False))
    assert sorted(out) == [(s, b) for s in range(7) for b in range(5)]
    # Within one split, batches keep their order.
    for split in range(7):
        assert [b for s, b in out if s == split] == list(range(5))


def test_unordered_does_not_wait_for_a_slow_first_split() -> None:
    # Split 0 is slow; split 1 is fast and holds far more batches than a queue. An ordered
    # read parks split 1 behind split 0; unordered lets all of it through first.
    many = 4 * QUEUE_DEPTH
    source = FakeSource(batches=many, delay=lambda split, batch: 0.01 if split == 0 else 0.0)
    out = tags(read_splits(source, make_splits(2), 2, ordered=False))
    assert sorted(out) == [(s, b) for s in range(2) for b in range(many)]
    assert out.index((1, many - 1)) < out.index((0, many - 1))


@pytest.mark.parametrize("parallelism", [1, 3])
def test_unordered_memory_is_bounded(parallelism: int) -> None:
    source = FakeSource(batches=40)
    consumed = 0
    most_outstanding = 0
    for _ in read_splits(source, make_splits(6), parallelism, ordered=False):
        consumed += 1
        with source.lock:
            most_outstanding = max(most_outstanding, source.produced - consumed)
        time.sleep(0.002)
    assert consumed == 6 * 40
    assert SHARED_DEPTH <= most_outstanding <= parallelism * SHARED_DEPTH + parallelism


def test_unordered_error_reaches_the_consumer() -> None:
    source = FakeSource(batches=3, fail_at=(2, 1))
    with pytest.raises(Boom, match="split 2 failed at batch 1"):
        list(read_splits(source, make_splits(5), 2, ordered=False))
    assert not wait_for_no_reader_threads()


def test_unordered_closing_early_stops_the_readers() -> None:
    source = FakeSource(batches=None)
    batches = read_splits(source, make_splits(10), 3, ordered=False)
    for _ in range(5):
        next(batches)
    batches.close()
    assert not wait_for_no_reader_threads(timeout=1.0)
    with source.lock:
        assert sorted(source.opened) == sorted(source.closed)
        assert set(source.opened) <= {0, 1, 2}
