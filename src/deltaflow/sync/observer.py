"""Progress of a sync, as its streams start, read rows and finish."""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    """Told about a stream's progress (the CLI draws progress bars from it)."""

    def stream_started(self, stream: str, total_rows: int | None) -> None: ...
    def rows_read(self, stream: str, rows: int) -> None: ...
    def stream_finished(self, stream: str) -> None: ...


class NullObserver:
    """An observer that ignores everything: the default when nobody watches."""

    def stream_started(self, stream: str, total_rows: int | None) -> None:
        pass

    def rows_read(self, stream: str, rows: int) -> None:
        pass

    def stream_finished(self, stream: str) -> None:
        pass
