"""Source options: one model per family of connectors, chosen by the connection's type.

A sync step's ``source`` holds what its connection reads: a SQL engine a table or a query
(:class:`SqlSource`; PostgreSQL also reads in ranges, :class:`SplitSqlSource`), files a
path (:class:`FileSource`), MongoDB a collection (:class:`MongoSource`). Each connection
model names the model it takes (``ConnectionBase.source_model``). While a pipeline
validates, :func:`selecting` maps each connection name to that model and the
discriminator of :data:`SourceSpec` picks it for every source; a source validated on its
own (a test, a tool) takes the first family whose options include every key it gives.

A family model refuses what does not fit it in one go, once its other keys are right:
the options of other families (``extra_forbidden`` on that key) and the options it needs
(a ``source_needs`` error on the source), so the file's diagnostics can name both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from deltaflow.config._base import Model

FileFormat = Literal["parquet", "csv", "jsonl"]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]

#: the error type of an option a source needs, with the options in its context
NEEDS = "source_needs"


class SourceBase(Model):
    """What every source has: its connection, its stream name and a row limit."""

    needs: ClassVar[tuple[tuple[str, ...], ...]] = ()
    """Groups of options of which the source needs one each, e.g. (('query', 'table'),)."""

    connection: str
    """Name of a connection under 'connections:'."""
    stream: Identifier | None = None
    """Name of the stream in summaries and run records (default: the table or file name)."""
    limit: int | None = Field(default=None, ge=1)
    """Read at most this many rows (a sample: which rows is not defined when splits are
    read in parallel); an incremental step that is limited does not move its watermark."""

    @classmethod
    def options(cls) -> list[str]:
        """The options this kind of source takes, as YAML spells them (not 'connection')."""
        fields = cls.model_fields.items()
        return sorted(info.alias or name for name, info in fields if name != "connection")

    @model_validator(mode="wrap")
    @classmethod
    def _fits(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """The source, or its problems: other errors first; when there are none, every
        option of another family and every option group it needs, together."""
        if not isinstance(data, dict):
            return handler(data)
        own = {"connection", *cls.options()}
        foreign = [k for k in data if k not in own and k in all_options()]
        needed = [g for g in cls.needs if all(data.get(k) is None for k in g)]
        source = None
        try:
            source = handler({k: v for k, v in data.items() if k not in foreign})
        except ValidationError as exc:
            rest = [_init(e) for e in exc.errors() if not _missing_need(e, needed)]
            if rest:
                raise ValidationError.from_exception_data(exc.title, rest) from None
        problems = [_foreign(k, data[k]) for k in foreign] + [_needs(g, data) for g in needed]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return source


def _missing_need(error: ErrorDetails, needed: list[tuple[str, ...]]) -> bool:
    """A required option missing that the ``needed`` groups report already."""
    return error["type"] == "missing" and any(error["loc"] == (k,) for g in needed for k in g)


def _init(error: ErrorDetails) -> InitErrorDetails:
    """An error as pydantic reported it, to be raised again."""
    init = InitErrorDetails(type=error["type"], loc=error["loc"], input=error["input"])
    if "ctx" in error:
        init["ctx"] = error["ctx"]
    return init


def _foreign(key: str, value: Any) -> InitErrorDetails:
    """An option of another family of sources, refused as an unknown key."""
    return InitErrorDetails(type="extra_forbidden", loc=(key,), input=value)


def _needs(group: tuple[str, ...], data: dict[str, Any]) -> InitErrorDetails:
    """A group of options of which the source needs one, on the source itself."""
    options = " or ".join(f"'{k}'" for k in sorted(group))
    error = PydanticCustomError(NEEDS, "a source needs {options}", {"options": options})
    return InitErrorDetails(type=error, loc=(), input=data)


class SqlSource(SourceBase):
    """A table or a query of a SQL engine (DuckDB, BigQuery)."""

    needs = (("query", "table"),)

    table: str | None = None
    """Table to read, optionally schema-qualified ('main.orders')."""
    query: str | None = None
    """SQL query to read instead of a table."""
    columns: list[str] | None = None
    """Columns to read (default: all)."""
    where: str | None = None
    """SQL filter applied to a table read."""

    @property
    def table_name(self) -> str:
        """The table read when there is no query ('' when a query is read)."""
        return self.table or ""


class SplitSqlSource(SqlSource):
    """A table or a query of PostgreSQL, whose tables are read in ranges at once."""

    splits: int | None = Field(default=None, ge=1, le=256)
    """Ranges a table is read in, in parallel (PostgreSQL ctid ranges; default: the
    step's parallelism)."""


class CsvOptions(Model):
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    header: bool = True
    """The first line names the columns."""
    null_values: list[str] = Field(default_factory=lambda: [""])
    """Strings read as NULL."""


class FileSource(SourceBase):
    """Every file a path or glob matches, read with one schema."""

    needs = (("path",),)

    path: str
    """File path or glob ('data/*.parquet'), relative to the connection's base path."""
    format: FileFormat | None = None
    """File format; inferred from the extension when omitted."""
    csv: CsvOptions | None = None
    """CSV parsing options."""
    columns: list[str] | None = None
    """Columns to read (default: all)."""


class MongoSource(SourceBase):
    """A MongoDB collection, or the result of an aggregation pipeline on it."""

    needs = (("collection",),)

    collection: str
    """MongoDB collection to read."""
    filter: dict[str, Any] | None = None
    """MongoDB query filter, in (extended) JSON: {status: active, ts: {$gte: {$date: ...}}}."""
    projection: dict[str, Any] | None = None
    """MongoDB projection: {name: 1, address: 1}."""
    sort: dict[str, Literal[1, -1]] | None = None
    """MongoDB sort: {created_at: 1}; a sorted read is one split."""
    pipeline: list[dict[str, Any]] | None = None
    """MongoDB aggregation pipeline, instead of filter/projection/sort (one split)."""
    sample_size: int = Field(default=1000, ge=1, le=1_000_000)
    """Documents sampled to infer the schema (half from the start, half from the end)."""
    max_nesting: int = Field(default=3, ge=0, le=32)
    """Documents nested deeper than this become JSON (0: every sub-document is JSON)."""
    on_conflict: Literal["json", "string"] = "json"
    """A field with conflicting types in the sample: JSON (extended JSON text), or text."""
    schema_: dict[str, str] = Field(default_factory=dict, alias="schema")
    """Declared types that override inference, by field: {price: 'decimal(12,2)'}."""
    splits: int | None = Field(default=None, ge=1, le=256)
    """Ranges of _id read in parallel (default: the step's parallelism)."""


#: every family, in the order a source validated on its own tries them
SOURCE_MODELS: tuple[type[SourceBase], ...] = (SqlSource, SplitSqlSource, FileSource, MongoSource)
#: the tag of each family in :data:`SourceSpec` (its class name) -> the family
SOURCE_TAGS: dict[str, type[SourceBase]] = {m.__name__: m for m in SOURCE_MODELS}


def all_options() -> set[str]:
    """The options some family of sources takes."""
    return {option for model in SOURCE_MODELS for option in model.options()}


_SELECTED: ContextVar[Mapping[str, type[SourceBase]]] = ContextVar(
    "sources", default=MappingProxyType({})
)


@contextlib.contextmanager
def selecting(models: Mapping[str, type[SourceBase]]) -> Iterator[None]:
    """Validate each source, for as long as this lasts, by the model of its connection
    (``models``: connection name -> the source model its type takes)."""
    token = _SELECTED.set(models)
    try:
        yield
    finally:
        _SELECTED.reset(token)


def source_tag(value: Any) -> str | None:
    """The tag of the family that validates ``value``: its connection's (see
    :func:`selecting`), else the first family that takes every key it gives; None for a
    value that is no mapping of options."""
    if isinstance(value, SourceBase):
        return type(value).__name__
    if not isinstance(value, dict):
        return None
    name = value.get("connection")
    model = _SELECTED.get().get(name) if isinstance(name, str) else None
    if model is None:
        keys = set(value) - {"connection"}
        model = next((m for m in SOURCE_MODELS if keys <= set(m.options())), SqlSource)
    return model.__name__


SourceSpec = Annotated[
    Annotated[SqlSource, Tag("SqlSource")]
    | Annotated[SplitSqlSource, Tag("SplitSqlSource")]
    | Annotated[FileSource, Tag("FileSource")]
    | Annotated[MongoSource, Tag("MongoSource")],
    Discriminator(
        source_tag,
        custom_error_type="source_type",
        custom_error_message="Input should be a valid dictionary or instance of SourceSpec",
    ),
]
"""Where a sync reads: the options of its connection's family of sources."""
