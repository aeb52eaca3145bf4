"""The run's MongoClient, and pymongo's errors mapped to DeltaFlow's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deltaflow.errors import ConnectionFailedError, SourceError

if TYPE_CHECKING:
    from deltaflow.config.connections import MongoDBConnection
    from deltaflow.connectors.protocol import RunResources


def client(conn: MongoDBConnection, resources: RunResources) -> Any:
    """The run's MongoClient for this connection, made once (it pools its sockets)."""
    import hashlib

    uri = conn.uri.get_secret_value()
    key = "mongodb:" + hashlib.sha256(uri.encode()).hexdigest()[:16]
    if key not in resources.handles:
        import pymongo

        made: Any = pymongo.MongoClient(
            uri,
            readPreference=conn.read_preference,
            serverSelectionTimeoutMS=int(conn.server_selection_timeout * 1000),
            socketTimeoutMS=int(conn.socket_timeout * 1000),
            # BSON dates are UTC instants: naive datetimes decode faster and pyarrow
            # takes them as UTC without asking a tzinfo object for each value
            tz_aware=False,
            appname="deltaflow",
        )
        resources.handles[key] = made
        resources.closers.append(made.close)
    return resources.handles[key]


def driver_error(exc: Exception, name: str) -> Exception:
    import pymongo.errors

    if isinstance(
        exc, pymongo.errors.ServerSelectionTimeoutError | pymongo.errors.ConnectionFailure
    ):
        return ConnectionFailedError(
            f"cannot reach MongoDB for {name}: {type(exc).__name__}",
            hint="check the uri, that the server runs and server_selection_timeout",
        )
    return SourceError(
        f"reading MongoDB {name} failed: {exc}",
        hint="check the collection, the filter or pipeline, and the connection",
    )
