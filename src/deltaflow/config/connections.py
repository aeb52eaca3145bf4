"""Connection models, one per system, discriminated by ``type``.

What each system can do is data on its model: the source and destination options it
takes and the write modes it supports. The code that talks to the system lives in
``deltaflow.connectors.<type>``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from deltaflow.config._base import Model

WriteMode = Literal["append", "replace", "merge"]
FileFormat = Literal["parquet", "csv", "jsonl"]


class ConnectionBase(Model):
    source_options: ClassVar[frozenset[str]] = frozenset()
    destination_options: ClassVar[frozenset[str]] = frozenset()
    required_source: ClassVar[tuple[frozenset[str], ...]] = ()
    required_destination: ClassVar[tuple[frozenset[str], ...]] = ()
    write_modes: ClassVar[tuple[WriteMode, ...]] = ()

    description: str = ""
    """What this connection is for."""

    @property
    def kind(self) -> str:
        """The connection's ``type``."""
        return str(getattr(self, "type", ""))


class DuckDBConnection(ConnectionBase):
    """An embedded DuckDB database file: the default warehouse."""

    source_options = frozenset({"table", "query", "columns", "where", "stream"})
    destination_options = frozenset({"table", "write_mode", "primary_key"})
    required_source = (frozenset({"table", "query"}),)
    required_destination = (frozenset({"table"}),)
    write_modes = ("append", "replace", "merge")

    type: Literal["duckdb"]
    path: str = "warehouse.duckdb"
    """Database file, relative to the pipeline file; ':memory:' for a throw-away one."""
    memory_limit: str | None = Field(default="1GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$")
    """DuckDB's memory limit, e.g. '1GB'; larger work spills to disk."""
    threads: int | None = Field(default=None, ge=1, le=256)
    """Threads DuckDB may use (default: all cores)."""


class FilesConnection(ConnectionBase):
    """Parquet, CSV and JSON Lines files on the local file system."""

    source_options = frozenset({"path", "format", "csv", "columns", "stream"})
    destination_options = frozenset({"path", "format", "write_mode"})
    required_source = (frozenset({"path"}),)
    required_destination = (frozenset({"path"}),)
    write_modes = ("append", "replace")

    type: Literal["files"]
    base_path: str = "."
    """Directory that relative paths resolve against (itself relative to the pipeline file)."""


Connection = Annotated[DuckDBConnection | FilesConnection, Field(discriminator="type")]

CONNECTION_MODELS: dict[str, type[ConnectionBase]] = {
    "duckdb": DuckDBConnection,
    "files": FilesConnection,
}
