"""The run queue as the service sees it: a run id handed on, to be executed by a worker.

The embedded default is a thread pool in the service's process
(:class:`deltaflow.ops.workers.EmbeddedWorkers`); a queue in PostgreSQL with separate
worker processes implements the same three methods.
"""

from __future__ import annotations

from typing import Protocol


class RunQueue(Protocol):
    """Where triggered runs go; workers take them from it."""

    def enqueue(self, run_id: str) -> None:
        """Hand on a queued run (its record is already in the state store)."""
        ...

    def start(self) -> None:
        """Start taking runs, beginning with those left queued in the store."""
        ...

    def stop(self, graceful: bool = True) -> None:
        """Stop taking runs; ``graceful`` lets a running run finish or hands it back."""
        ...

    def alive(self) -> bool:
        """Whether the queue can take and run work (for readiness)."""
        ...
