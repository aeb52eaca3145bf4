"""Connection models, one per system, discriminated by ``type``.

What each system can do is data on its model: the model of its source options
(``deltaflow.config.sources``), the destination options it takes and the write modes it
supports. The code that talks to the system lives in
``deltaflow.connectors.<type>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator

from deltaflow.config._base import Model
from deltaflow.config.sources import (
    FileFormat as FileFormat,
)
from deltaflow.config.sources import (
    FileSource,
    MongoSource,
    SourceBase,
    SplitSqlSource,
    SqlSource,
)

WriteMode = Literal["append", "replace", "merge"]
Role = Literal["source", "destination"]


class ConnectionBase(Model):
    source_model: ClassVar[type[SourceBase] | None] = None
    """The model of a source reading this connection (None: it cannot be a source)."""
    destination_options: ClassVar[frozenset[str]] = frozenset()
    required_destination: ClassVar[tuple[frozenset[str], ...]] = ()
    write_modes: ClassVar[tuple[WriteMode, ...]] = ()
    keeps_state: ClassVar[bool] = False
    """A transactional destination: incremental state commits with the rows."""
    is_warehouse: ClassVar[bool] = False
    """Runs SQL: quality checks, metrics, reconciliation (its package has a warehouse)."""

    description: str = ""
    """What this connection is for."""

    @property
    def kind(self) -> str:
        """The connection's ``type``."""
        return str(getattr(self, "type", ""))

    def place_problem(self, role: Role, options: Mapping[str, Any]) -> Problem | None:
        """A problem with where a source on this connection reads or a destination writes
        (``options`` holds its raw keys), found before anything runs; None when it is fine."""
        return None


Problem = tuple[str, str, str]
"""A problem with one option: (its key, the message, the fix)."""

#: file extensions and the format each means, when 'format' is not given
FILE_EXTENSIONS: dict[str, FileFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


class DuckDBConnection(ConnectionBase):
    """An embedded DuckDB database file: the default warehouse."""

    source_model = SqlSource
    destination_options = frozenset({"table", "write_mode", "primary_key", "on_schema_change"})
    required_destination = (frozenset({"table"}),)
    write_modes = ("append", "replace", "merge")
    keeps_state = True
    is_warehouse = True

    type: Literal["duckdb"]
    path: str = "warehouse.duckdb"
    """Database file, relative to the pipeline file; ':memory:' for a throw-away one."""
    memory_limit: str | None = Field(default="128MB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$")
    """DuckDB's memory limit, e.g. '1GB'; larger work spills to disk."""
    threads: int | None = Field(default=None, ge=1, le=256)
    """Threads DuckDB may use (default: all cores)."""

    def place_problem(self, role: Role, options: Mapping[str, Any]) -> Problem | None:
        """A table in a schema named like the database file: DuckDB names the file's
        catalog by its stem, and cannot tell ``raw.orders`` in ``raw.duckdb`` apart."""
        table = options.get("table")
        if not isinstance(table, str) or table.count(".") != 1:
            return None
        schema = table.split(".")[0].strip('"')
        catalog = "memory" if self.path == ":memory:" else PurePath(self.path).stem
        if schema.lower() != catalog.lower() or schema.lower() == "main":
            return None  # 'main.t' in main.duckdb is the same table either way
        return (
            "table",
            f"table '{table}' is in schema '{schema}', the name DuckDB gives the database "
            f"file '{self.path}': DuckDB cannot tell the two apart",
            f"rename the schema or the file, or write the table as '{catalog}.{table}'",
        )


class FilesConnection(ConnectionBase):
    """Parquet, CSV and JSON Lines files on the local file system."""

    source_model = FileSource
    destination_options = frozenset({"path", "format", "write_mode"})
    required_destination = (frozenset({"path"}),)
    write_modes = ("append", "replace")

    type: Literal["files"]
    base_path: str = "."
    """Directory that relative paths resolve against (itself relative to the pipeline file)."""

    def place_problem(self, role: Role, options: Mapping[str, Any]) -> Problem | None:
        """A path whose extension does not name a format, without 'format'. A destination
        path without an extension is a directory of Parquet files."""
        path = options.get("path")
        if not isinstance(path, str) or options.get("format") is not None:
            return None
        suffix = PurePath(path.rstrip("*")).suffix.lower()
        if suffix in FILE_EXTENSIONS or (role == "destination" and not suffix):
            return None
        return (
            "path",
            f"cannot tell the format of '{path}' from its extension",
            f"add 'format:' with one of: parquet, csv, jsonl "
            f"(known extensions: {', '.join(FILE_EXTENSIONS)})",
        )


class PostgresConnection(ConnectionBase):
    """A PostgreSQL server, through the ADBC driver (reads) and COPY (loads)."""

    source_model = SplitSqlSource
    destination_options = frozenset(
        {
            "table",
            "write_mode",
            "primary_key",
            "indexes",
            "drop_existing",
            "nested",
            "on_schema_change",
        }
    )
    required_destination = (frozenset({"table"}),)
    write_modes = ("append", "replace", "merge")
    keeps_state = True
    is_warehouse = True

    type: Literal["postgres"]
    dsn: SecretStr | None = None
    """Connection URI, e.g. '${env:SHOP_DSN}'; or give host, port, database, user, password."""
    host: str = "localhost"
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = "postgres"
    user: str | None = None
    password: SecretStr | None = None
    """Password; write it as a secret reference, e.g. '${env:PGPASSWORD}'."""
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    application_name: str = "deltaflow"
    connect_timeout: int = Field(default=10, ge=1, le=600)
    """Seconds to wait for a connection."""

    def uri(self) -> str:
        """The libpq connection string with every setting, in the form ``dsn`` is written
        in (a URI, or ``key=value`` words); it holds the password: never log it."""
        params = {
            "sslmode": self.sslmode,
            "application_name": self.application_name,
            "connect_timeout": str(self.connect_timeout),
        }
        if self.dsn is None:
            auth = quote(self.user or "", safe="")
            if self.password is not None:
                auth += ":" + quote(self.password.get_secret_value(), safe="")
            at = f"{auth}@" if auth else ""
            base = f"postgresql://{at}{self.host}:{self.port}/{quote(self.database, safe='')}"
        else:
            base = self.dsn.get_secret_value().strip()
        if not _is_uri(base):
            words = _keywords(base)
            extra = " ".join(f"{k}={_word(v)}" for k, v in params.items() if k not in words)
            return f"{base} {extra}".strip()
        sep = "&" if "?" in base else "?"
        present = {kv.split("=")[0] for kv in base.partition("?")[2].split("&") if kv}
        extra = "&".join(f"{k}={quote(v)}" for k, v in params.items() if k not in present)
        return f"{base}{sep}{extra}" if extra else base

    def address(self) -> str:
        """The server the connection points at, ``host:port``, for messages."""
        if self.dsn is None:
            return f"{self.host}:{self.port}"
        dsn = self.dsn.get_secret_value().strip()
        if _is_uri(dsn):
            where = urlsplit(dsn).netloc.rpartition("@")[2] or "localhost"
            return where if ":" in where or "," in where else f"{where}:5432"
        words = _keywords(dsn)
        host = words.get("host") or words.get("hostaddr") or "localhost"
        return f"{host}:{words.get('port') or 5432}"

    def secret_password(self) -> str | None:
        """The password, decoded, wherever it is written (``password``, or in ``dsn``)."""
        if self.dsn is None:
            return self.password.get_secret_value() if self.password else None
        dsn = self.dsn.get_secret_value().strip()
        if _is_uri(dsn):
            password = urlsplit(dsn).password
            return unquote(password) if password else None
        return _keywords(dsn).get("password")


#: one ``key = value`` word of a libpq connection string: a value is 'quoted' or bare,
#: with backslash escapes in both
_WORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)*)")


def _is_uri(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def _keywords(dsn: str) -> dict[str, str]:
    """The settings of a ``key=value`` connection string (what cannot be read is left out:
    libpq reports it when connecting)."""
    out: dict[str, str] = {}
    for match in _WORD.finditer(dsn):
        value = match.group(2)
        if value.startswith("'"):
            value = value[1:-1]
        out[match.group(1)] = re.sub(r"\\(.)", r"\1", value)
    return out


def _word(value: str) -> str:
    """A value of a ``key=value`` connection string, quoted when it must be."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class BigQueryConnection(ConnectionBase):
    """Google BigQuery, through the official client libraries (or an emulator)."""

    source_model = SqlSource
    destination_options = frozenset(
        {"table", "write_mode", "primary_key", "partition_by", "cluster_by", "on_schema_change"}
    )
    required_destination = (frozenset({"table"}),)
    write_modes = ("append", "replace", "merge")

    keeps_state = True
    is_warehouse = True

    type: Literal["bigquery"]
    project: str = Field(min_length=1)
    """The Google Cloud project that runs the jobs and holds the datasets."""
    dataset: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]{1,1024}$")
    """Dataset of tables named without one ('orders' -> dataset.orders)."""
    location: str | None = None
    """Where jobs run and datasets are created, e.g. 'EU' (default: BigQuery's)."""
    credentials: Literal["default", "anonymous"] | None = None
    """'default': application default credentials; 'anonymous': none (emulators). Unset:
    'default', or 'anonymous' when api_endpoint is set."""
    key_file: str | None = None
    """A service-account key file, instead of 'credentials' (relative to the pipeline)."""
    api_endpoint: str | None = None
    """REST endpoint of an emulator, e.g. 'http://127.0.0.1:9050'."""
    storage_endpoint: str | None = None
    """Storage Read API (gRPC) 'host:port' of an emulator, reached without TLS."""
    timeout: float = Field(default=120.0, gt=0, le=3600)
    """Seconds each API call and job may take."""

    @field_validator("api_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/:]+(:\d{1,5})?(/\S*)?", value):
            raise ValueError(
                f"api_endpoint must be an http:// or https:// URL, "
                f"e.g. 'http://{value.split('://')[-1].strip('/') or '127.0.0.1:9050'}'"
            )
        return value

    @field_validator("storage_endpoint")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^\s/:]+:\d{1,5}", value):
            raise ValueError(
                "storage_endpoint must be 'host:port', without a scheme or a path, "
                "e.g. '127.0.0.1:9060'"
            )
        return value


class MongoDBConnection(ConnectionBase):
    """A MongoDB deployment, through pymongo."""

    source_model = MongoSource

    type: Literal["mongodb"]
    uri: SecretStr
    """Connection string, e.g. '${env:MONGO_URI}' (it may hold a password: a secret)."""
    database: str = Field(min_length=1)
    """Database of the collections read."""
    read_preference: Literal[
        "primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"
    ] = "primary"
    """Which members serve the reads; 'secondaryPreferred' keeps load off the primary."""
    server_selection_timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds to wait for a server to answer before the run fails."""
    socket_timeout: float = Field(default=300.0, gt=0, le=86400)
    """Seconds a read may wait for the server."""


Connection = Annotated[
    DuckDBConnection
    | FilesConnection
    | PostgresConnection
    | BigQueryConnection
    | MongoDBConnection,
    Field(discriminator="type"),
]

CONNECTION_MODELS: dict[str, type[ConnectionBase]] = {
    "bigquery": BigQueryConnection,
    "duckdb": DuckDBConnection,
    "files": FilesConnection,
    "mongodb": MongoDBConnection,
    "postgres": PostgresConnection,
}


def warehouse_types() -> list[str]:
    """The connection types that run SQL, for messages."""
    return sorted(kind for kind, model in CONNECTION_MODELS.items() if model.is_warehouse)


def connection_kinds(data: Any) -> dict[str, str]:
    """name -> type of each connection of raw pipeline data whose type is known."""
    connections = data.get("connections") if isinstance(data, dict) else None
    if not isinstance(connections, dict):
        return {}
    return {
        str(name): conn["type"]
        for name, conn in connections.items()
        if isinstance(conn, dict)
        and isinstance(conn.get("type"), str)
        and conn["type"] in CONNECTION_MODELS
    }
