"""The pipeline model: what a YAML file, the CLI and the API all build."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from deltaflow.config._base import Model
from deltaflow.config.connections import Connection, FileFormat, WriteMode

Scalar = str | int | float | bool
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]


class CsvOptions(Model):
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    header: bool = True
    """The first line names the columns."""
    null_values: list[str] = Field(default_factory=lambda: [""])
    """Strings read as NULL."""


class SourceSpec(Model):
    """Where a sync reads. Which options apply depends on the connection's type."""

    connection: str
    """Name of a connection under 'connections:'."""
    stream: Identifier | None = None
    """Name of the stream in summaries and run records (default: the table or file name)."""
    table: str | None = None
    """Table to read, optionally schema-qualified ('main.orders')."""
    query: str | None = None
    """SQL query to read instead of a table."""
    columns: list[str] | None = None
    """Columns to read (default: all)."""
    where: str | None = None
    """SQL filter applied to a table read."""
    path: str | None = None
    """File path or glob ('data/*.parquet'), relative to the connection's base path."""
    format: FileFormat | None = None
    """File format; inferred from the extension when omitted."""
    csv: CsvOptions | None = None
    """CSV parsing options."""
    splits: int | None = Field(default=None, ge=1, le=256)
    """Ranges a table is read in, in parallel (PostgreSQL; default: the step's parallelism)."""


class IndexSpec(Model):
    columns: list[str] = Field(min_length=1)
    using: Literal["btree", "gin", "gist", "hash", "brin"] = "btree"
    unique: bool = False
    name: str | None = None
    """Index name (default: derived from the table and columns)."""


class DestinationSpec(Model):
    """Where a sync writes."""

    connection: str
    """Name of a connection under 'connections:'."""
    table: str | None = None
    """Table to write, optionally schema-qualified ('raw.orders'); created when missing."""
    path: str | None = None
    """Directory a files destination writes its part files to."""
    format: FileFormat | None = None
    write_mode: WriteMode = "append"
    """append: add rows; replace: swap the whole table atomically; merge: upsert on primary_key."""
    primary_key: list[str] = Field(default_factory=list)
    """Columns identifying a row; required by write_mode merge."""
    indexes: list[IndexSpec] = Field(default_factory=list)
    """Indexes to create with the table (PostgreSQL), e.g. a GIN index on a JSONB column."""
    drop_existing: bool = False
    """Drop and recreate the table before loading (a clean reload)."""
    nested: Literal["json", "array"] = "json"
    """How lists and structs are stored where the engine has no native type for them:
    'json' (JSONB), or 'array' (native arrays where the element type allows, else JSONB)."""
    on_schema_change: Literal["fail", "add_columns", "evolve"] = "evolve"
    """When the source schema differs from the table: 'fail' stops; 'add_columns' adds new
    columns; 'evolve' also widens types (int -> bigint, varchar(n) -> text, ...)."""


class SyncStep(Model):
    """Copy one stream from a source to a destination."""

    step_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=128)]
    type: Literal["sync"]
    name: str | None = None
    description: str = ""
    variables: dict[str, Scalar] = Field(default_factory=dict)
    """Step variables; they override pipeline variables."""
    source: SourceSpec
    destination: DestinationSpec
    batch_size: int = Field(default=65_536, ge=1, le=10_000_000)
    """Rows per Arrow record batch."""
    parallelism: int | None = Field(default=None, ge=1, le=64)
    """Splits read at once (default: the number of cores, at most 4)."""


Step = Annotated[SyncStep, Field(discriminator="type")]

STEP_TYPES = ("sync",)


class Pipeline(Model):
    """A pipeline: named connections and the steps that use them."""

    pipeline_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=200)]
    """Identifier of the pipeline; may use variables such as '{tenant_id}-orders'."""
    description: str = ""
    variables: dict[str, Scalar] = Field(default_factory=dict)
    """Pipeline variables, usable as {name} in any string."""
    connections: dict[str, Connection] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
