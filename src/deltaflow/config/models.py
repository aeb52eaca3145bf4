"""The pipeline model: what a YAML file, the CLI and the API all build."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidatorFunctionWrapHandler, field_validator, model_validator

from deltaflow.config._base import Model
from deltaflow.config.connections import CONNECTION_MODELS, Connection, WriteMode, connection_kinds
from deltaflow.config.sources import FileFormat, SourceBase, selecting
from deltaflow.config.sources import SourceSpec as SourceSpec  # the union, by its old name
from deltaflow.errors import ConfigError, did_you_mean

Scalar = str | int | float | bool


class IndexSpec(Model):
    columns: list[str] = Field(min_length=1)
    using: Literal["btree", "gin", "gist", "hash", "brin"] = "btree"
    unique: bool = False
    name: str | None = None
    """Index name (default: derived from the table and columns)."""


class PartitionSpec(Model):
    """A time-partitioned table: by a column, or by ingestion time when none is named."""

    field: str | None = None
    """A DATE, TIMESTAMP or DATETIME column (default: the ingestion time)."""
    granularity: Literal["DAY", "HOUR", "MONTH", "YEAR"] = "DAY"
    expiration_days: float | None = Field(default=None, gt=0)
    """Delete partitions older than this."""
    require_filter: bool = False
    """Queries must filter on the partition column."""


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
    partition_by: PartitionSpec | None = None
    """Partition the table by a date or timestamp column (BigQuery)."""
    cluster_by: list[str] = Field(default_factory=list, max_length=4)
    """Columns to cluster the table by, up to four (BigQuery)."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_seconds(value: str | int | float) -> float:
    """'90s', '15m', '2h', '1d', '500ms' or a number of seconds -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(
            f"'{value}' is not a duration; write a number and a unit: 500ms, 90s, 15m, 2h, 1d"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


class IncrementalSpec(Model):
    """Load only what changed since the last run, exactly once (see the README)."""

    cursor: str = Field(min_length=1)
    """Column that grows when a row is added or changed (e.g. updated_at, or an id)."""
    cursor_type: Literal["timestamp", "integer", "objectid"] = "timestamp"
    """'objectid': MongoDB's _id, in the time order ObjectIds carry (no lookback)."""
    on_empty: Literal["full", "fallback"] = "full"
    """With no state and an empty destination: load everything, or the last fallback_days."""
    fallback_days: int = Field(default=7, ge=1, le=36_500)
    lookback: str | int = 0
    """Re-read this far behind the watermark on every run, for rows that commit late
    ('15m'; for an integer cursor, a number). Needs write_mode merge."""
    safety_lag: str | int = 0
    """Read only up to now minus this, leaving the newest rows to the next run ('30s')."""
    null_cursor: Literal["skip", "load", "fail"] = "fail"
    """Rows whose cursor is NULL: skip them (counted), load them on every run (needs
    write_mode merge), or fail the step."""
    timezone: str = "UTC"
    """Time zone of a cursor stored without one (timestamp without time zone)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone '{value}'; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return value

    @field_validator("lookback", "safety_lag")
    @classmethod
    def _duration(cls, value: str | int) -> str | int:
        if duration_seconds(value) < 0:
            raise ValueError("a duration cannot be negative")
        return value

    @model_validator(mode="after")
    def _integer_durations(self) -> IncrementalSpec:
        for name in ("lookback", "safety_lag"):
            if self.cursor_type == "integer" and not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} of an integer cursor is a number of cursor units")
            if self.cursor_type == "objectid" and duration_seconds(getattr(self, name)):
                raise ValueError(f"an objectid cursor takes no {name}: ObjectIds have no clock")
        return self

    def lookback_value(self) -> float:
        return duration_seconds(self.lookback)

    def safety_lag_value(self) -> float:
        return duration_seconds(self.safety_lag)


class BaseStep(Model):
    """What every step has: its id, a name and description, and its variables."""

    step_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=128)]
    name: str | None = None
    description: str = ""
    variables: dict[str, Scalar] = Field(default_factory=dict)
    """Step variables; they override pipeline variables."""


class SyncStep(BaseStep):
    """Copy one stream from a source to a destination."""

    type: Literal["sync"]
    source: SourceSpec | None = None
    sources: list[SourceSpec] | None = Field(default=None, min_length=1)
    """Several sources feeding one table, read in parallel, each with its own incremental
    state; they must have the same columns and types. Use instead of 'source'."""
    destination: DestinationSpec
    batch_size: int = Field(default=65_536, ge=1, le=10_000_000)
    """Rows per Arrow record batch."""
    parallelism: int | None = Field(default=None, ge=1, le=64)
    """Splits read at once (default: the number of cores, at most 4)."""
    incremental: IncrementalSpec | None = None
    """Load only rows whose cursor moved past the last run's watermark."""
    resumable: bool = False
    """Load each split in its own transaction, with a record of the splits done, so a
    rerun after a crash reads only the rest (BigQuery sources; append or merge)."""
    checks: list[RowCheckSpec] = Field(default_factory=list)
    """Row checks run on the batches before they load (not_null, between,
    accepted_values, regex), each with an action: quarantine, fail or warn."""
    parse_dates: dict[str, str] = Field(default_factory=dict)
    """Text (or integer) columns holding dates, parsed to DATE with a strptime format:
    {filing_date: '%Y%m%d'}. An empty string is NULL; a value that does not parse stops
    the step (nothing is loaded) with the column and the value."""

    @model_validator(mode="after")
    def _one_source_key(self) -> SyncStep:
        if (self.source is None) == (self.sources is None):
            raise ValueError("a sync step needs either 'source' or 'sources' (a list), not both")
        return self

    @property
    def all_sources(self) -> list[SourceSpec]:
        return [self.source] if self.source is not None else list(self.sources or [])


CheckKind = Literal[
    "not_null",
    "unique",
    "between",
    "accepted_values",
    "regex",
    "row_count",
    "freshness",
    "schema",
    "custom_sql",
]
#: Great Expectations' expectation names, each the check it is, with GE's parameters
#: (value_set, regex, column_list, min_value, max_value, strict_min, strict_max, mostly)
CHECK_ALIASES: dict[str, str] = {
    "expect_column_values_to_not_be_null": "not_null",
    "expect_column_values_to_be_unique": "unique",
    "expect_compound_columns_to_be_unique": "unique",
    "expect_column_values_to_be_between": "between",
    "expect_column_values_to_be_in_set": "accepted_values",
    "expect_column_values_to_match_regex": "regex",
    "expect_table_row_count_to_be_between": "row_count",
}
#: GE's parameter names -> DeltaFlow's
PARAMETER_ALIASES = {
    "min_value": "min",
    "max_value": "max",
    "value_set": "values",
    "regex": "pattern",
    "column_list": "columns",
}
#: checks that judge each row (the others observe one value of the table)
ROW_CHECK_KINDS = ("not_null", "unique", "between", "accepted_values", "regex")
#: what each check needs, beyond 'check'
CHECK_NEEDS: dict[str, tuple[str, ...]] = {
    "not_null": ("column",),
    "unique": ("columns",),
    "between": ("column",),
    "accepted_values": ("column", "values"),
    "regex": ("column", "pattern"),
    "row_count": (),
    "freshness": ("column", "max_age"),
    "schema": ("expected",),
    "custom_sql": ("sql",),
}


class CheckSpec(Model):
    """One data-quality check, run as SQL where the table lives."""

    check: CheckKind
    """What to check; expectation names (expect_column_values_to_not_be_null, ...) work too."""
    name: str | None = None
    """Name in results (default: check and column)."""
    column: str | None = None
    columns: list[str] | None = None
    """Key columns of a 'unique' check (or give 'column')."""
    min: float | int | None = None
    """'between', 'row_count': the lowest value allowed (GE: min_value)."""
    max: float | int | None = None
    """'between', 'row_count': the highest value allowed (GE: max_value)."""
    strict_min: bool = False
    """The value must be above min, not equal to it ('inclusive: false' sets both)."""
    strict_max: bool = False
    """The value must be below max, not equal to it."""
    values: list[str | int | float | bool] | None = None
    """'accepted_values': the values a column may hold (GE: value_set; NULL passes)."""
    pattern: str | None = None
    """'regex': a pattern every non-NULL value must contain a match of (GE: regex)."""
    mostly: float | None = None
    """Row checks: the share of the rows checked (non-NULL ones but for not_null) that
    must pass, as in Great Expectations (0.95: up to 5% may fail)."""
    max_age: str | None = None
    """'freshness': how old the newest value may be ('1d', '6h')."""
    expected: dict[str, str] | None = None
    """'schema': expected columns and types ({id: int64, email: string})."""
    sql: str | None = None
    """'custom_sql': a query returning the failing rows, or one number (0 passes)."""
    filter: str | None = None
    """Check only the rows matching this SQL condition."""
    severity: Literal["critical", "warning"] = "critical"
    """critical: a failure stops the pipeline; warning: it is recorded and the run goes on."""
    max_failures: int = Field(default=0, ge=0)
    """Failing rows allowed before the check fails."""
    max_failure_percent: float | None = Field(default=None, ge=0, le=100)
    """Failing rows allowed, as a percentage of the rows checked (as mostly, in percent
    failing)."""

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "type" in data and "check" not in data:
            data["check"] = data.pop("type")
        if isinstance(data.get("check"), str):
            name = data["check"]
            if name.startswith("expect_") and name not in CHECK_ALIASES:
                raise ValueError(
                    f"expectation {name} is not supported."
                    f"{did_you_mean(name, CHECK_ALIASES)} Supported: {', '.join(CHECK_ALIASES)}"
                )
            data["check"] = CHECK_ALIASES.get(name, name)
        for long, short in PARAMETER_ALIASES.items():
            if long in data:
                if short in data:
                    raise ValueError(f"give {short} or its GE name {long}, not both")
                data[short] = data.pop(long)
        if "inclusive" in data:  # the older spelling of two strict bounds
            inclusive = data.pop("inclusive")
            if inclusive is not True and inclusive is not False:
                raise ValueError(f"inclusive is true or false, not {inclusive!r}")
            data.setdefault("strict_min", not inclusive)
            data.setdefault("strict_max", not inclusive)
        if data.get("check") == "unique" and "column" in data and "columns" not in data:
            data["columns"] = [data.pop("column")]
        return data

    @field_validator("mostly")
    @classmethod
    def _share(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError(
                f"mostly is the share of rows that must pass, from 0 to 1 (0.95 for 95%), "
                f"not {value}"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> CheckSpec:
        missing = [k for k in CHECK_NEEDS[self.check] if getattr(self, k) in (None, [], {})]
        if missing:
            raise ValueError(f"a {self.check} check needs {' and '.join(missing)}")
        if self.check == "between" and self.min is None and self.max is None:
            raise ValueError("a between check needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}; swap them")
        if self.mostly is not None:
            if self.check not in ROW_CHECK_KINDS:
                raise ValueError(
                    f"mostly applies to row checks ({', '.join(ROW_CHECK_KINDS)}), "
                    f"not to {self.check}"
                )
            if self.max_failure_percent is not None:
                raise ValueError(
                    "give mostly or max_failure_percent, not both: mostly 0.95 is "
                    "max_failure_percent 5"
                )
        if self.max_age is not None:
            duration_seconds(self.max_age)
        return self

    @property
    def label(self) -> str:
        target = self.column or ",".join(self.columns or [])
        return self.name or (f"{self.check}({target})" if target else self.check)


class RowCheckSpec(CheckSpec):
    """A row check on a sync's batches, before they load."""

    action: Literal["quarantine", "fail", "warn"] = "quarantine"
    """quarantine: failing rows go to the quarantine table, the rest load; fail: stop the
    step; warn: count them and load them."""

    @model_validator(mode="after")
    def _per_row(self) -> RowCheckSpec:
        if self.mostly is not None:
            raise ValueError(
                "mostly judges a whole table, and a row check in flight acts on each row "
                "as it passes; run the check in a quality step after the load, or drop mostly"
            )
        return self


class QualityStep(BaseStep):
    """Run data-quality checks on a table where it lives (DuckDB, PostgreSQL, BigQuery)."""

    type: Literal["quality"]
    connection: str
    """The warehouse connection holding the table."""
    table: str
    """The table to check ('schema.table', or 'dataset.table' on BigQuery)."""
    checks: list[CheckSpec] = Field(min_length=1)
    sample_size: int = Field(default=5, ge=0, le=100)
    """Failing rows kept with each result."""


class MetricsStep(BaseStep):
    """Run business metrics (SQL in the Metrics framework's JSON) in a warehouse."""

    type: Literal["metrics"]
    connection: str
    """The warehouse the metrics run in and write to (duckdb, postgres, bigquery)."""
    config: str
    """Metric definitions: a JSON file (relative to the pipeline) or gs://bucket/key."""
    dependencies: list[str] = Field(default_factory=list)
    """Dependency groups to run (default: all)."""
    run_date: str | None = None
    """The date metrics run for, YYYY-MM-DD (e.g. '{date}'; default: today, UTC)."""
    partition_info_table: str | None = None
    """Table of latest partition dates (table_name, partition_dt), for {partition_info}."""
    recon_table: str = "metrics_recon"
    """Table the reconciliation records are appended to."""
    dialect: str = "bigquery"
    """SQL dialect the metrics are written in."""
    timeout: float = Field(default=180.0, gt=0)
    """Seconds each metric may take."""
    workers: int = Field(default=4, ge=1, le=64)
    """Metrics run at once."""


Step = Annotated[SyncStep | QualityStep | MetricsStep, Field(discriminator="type")]

STEP_TYPES = ("sync", "quality", "metrics")


class Pipeline(Model):
    """A pipeline: named connections and the steps that use them."""

    pipeline_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=200)]
    """Identifier of the pipeline; may use variables such as '{tenant_id}-orders'."""
    description: str = ""
    variables: dict[str, Scalar] = Field(default_factory=dict)
    """Pipeline variables, usable as {name} in any string."""
    connections: dict[str, Connection] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="wrap")
    @classmethod
    def _sources_by_connection(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Each source is validated by the model its connection's type takes."""
        with selecting(source_models(data)):
            return handler(data)


def source_models(data: Any) -> dict[str, type[SourceBase]]:
    """name -> source model of each connection of raw pipeline data that can be a source."""
    kinds = connection_kinds(data)
    models = {name: CONNECTION_MODELS[kind].source_model for name, kind in kinds.items()}
    return {name: model for name, model in models.items() if model is not None}


SyncStep.model_rebuild()


AnyStep = TypeVar("AnyStep", bound=BaseStep)


def select_steps(steps: Sequence[AnyStep], only: Sequence[str]) -> list[AnyStep]:
    """The steps named in ``only`` (all when empty); an unknown name is a ConfigError."""
    if not only:
        return list(steps)
    ids = [s.step_id for s in steps]
    for name in only:
        if name not in ids:
            raise ConfigError(
                f"no step '{name}' in this pipeline.{did_you_mean(name, ids)}",
                hint=f"steps: {', '.join(ids)}",
            )
    return [s for s in steps if s.step_id in only]
