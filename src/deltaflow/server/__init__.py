"""The pipeline service's HTTP front door (FastAPI): ``create_app(settings)``.

Like the command line, it parses requests, calls ``deltaflow.ops`` and renders what comes
back; the use cases, the state store and the workers live below it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deltaflow.server.app import create_app
    from deltaflow.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from deltaflow.server.app import create_app

        return create_app
    if name == "ServerSettings":
        from deltaflow.server.settings import ServerSettings

        return ServerSettings
    raise AttributeError(name)
