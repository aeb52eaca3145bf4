"""The local engine: read a stream's splits on threads and hand their batches on.

Up to ``parallelism`` splits are read at once. Ordered (the default), each split has its
own bounded queue and the consumer drains the queues in split order, so the output order
is the same on every run (a merge keeps the last row of a key deterministically); a
later split can run ahead only as far as its queue. Unordered, all readers share one
bounded queue and the consumer takes batches as they come, which keeps every reader busy.
Either way memory holds at most ``parallelism * (queue_depth + 1)`` batches whatever the
table size (``parallelism * (SHARED_DEPTH + 1)`` unordered).

Reader threads run at a lower CPU priority than the consumer (Linux). The consumer is the
one serial stage (it writes every batch); given an equal share of a small machine beside
the readers and the database backends that feed them, it falls behind, the queues fill,
and then it runs alone while the readers wait: on 2 cores a PostgreSQL -> DuckDB read of
5M rows took 12.6-14.0 s at equal priority and 7.5-10.5 s with the readers at niceness
19, with less CPU and a lower peak RSS (fewer batches waiting). The readers still get
every cycle the consumer leaves idle. Threads a reader starts inherit its priority (pyarrow
starts its pool threads on demand, from whichever thread first needs them).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.connectors.protocol import Source, Split

_DONE = object()
QUEUE_DEPTH = 4
#: batches per reader in the shared queue of an unordered read: any reader can fill it,
#: so it needs less slack than a queue per split
SHARED_DEPTH = 2
#: niceness of reader threads, so that the consumer is never starved (module docstring)
READER_NICENESS = 19


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def read_splits(
    source: Source,
    splits: list[Split],
    parallelism: int,
    on_batch: Callable[[pa.RecordBatch], None] | None = None,
    *,
    ordered: bool = True,
) -> Generator[pa.RecordBatch, None, None]:
    """Every batch of every split, read ``parallelism`` splits at a time.

    ``ordered`` hands batches on in split order; otherwise in the order they arrive, which
    keeps every reader busy (an ordered read lets a later split run ahead only as far as
    its queue).
    """
    parallelism = max(1, parallelism)  # 0 would start no reader and wait forever
    if not ordered:
        yield from _unordered(source, splits, parallelism, on_batch)
        return
    stop = threading.Event()
    queues: list[queue.Queue[Any]] = [queue.Queue(QUEUE_DEPTH) for _ in splits]
    with _readers(parallelism) as pool:
        pending = iter(range(len(splits)))
        for index in _take(pending, parallelism):
            pool.submit(_produce, source, splits[index], queues[index], stop)
        try:
            for q in queues:
                yield from _drain(q, on_batch)
                for index in _take(pending, 1):
                    pool.submit(_produce, source, splits[index], queues[index], stop)
        finally:
            stop.set()
            for q in queues:  # unblock producers waiting on a full queue
                _empty(q)


def _unordered(
    source: Source,
    splits: list[Split],
    parallelism: int,
    on_batch: Callable[[pa.RecordBatch], None] | None,
) -> Generator[pa.RecordBatch, None, None]:
    stop = threading.Event()
    shared: queue.Queue[Any] = queue.Queue(parallelism * SHARED_DEPTH)
    with _readers(parallelism) as pool:
        for split in splits:
            pool.submit(_produce, source, split, shared, stop)
        try:
            for _ in splits:
                yield from _drain(shared, on_batch)
        finally:
            stop.set()
            _empty(shared)


def _take(indices: Iterator[int], count: int) -> list[int]:
    return [i for _, i in zip(range(count), indices, strict=False)]


def _readers(parallelism: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        parallelism, thread_name_prefix="deltaflow-read", initializer=_lower_priority
    )


def _lower_priority() -> None:
    """Run the calling thread at READER_NICENESS; Linux only, where a thread id is a pid
    for setpriority. Best effort: a refusal leaves the thread at its current priority."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICENESS)


def _produce(source: Source, split: Split, out: queue.Queue[Any], stop: threading.Event) -> None:
    if stop.is_set():  # the consumer left before this split started: do not open it
        return
    try:
        for batch in source.read(split):
            if not _put(out, batch, stop):
                return
        _put(out, _DONE, stop)
    except BaseException as exc:
        _put(out, _Failure(exc), stop)


def _put(out: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _drain(
    q: queue.Queue[Any],
    on_batch: Callable[[pa.RecordBatch], None] | None,
) -> Iterator[pa.RecordBatch]:
    while True:
        item = q.get()
        if item is _DONE:
            return
        if isinstance(item, _Failure):
            raise item.error
        if on_batch is not None:
            on_batch(item)
        yield item


def _empty(q: queue.Queue[Any]) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
