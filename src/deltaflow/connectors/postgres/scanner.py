"""Reading PostgreSQL with DuckDB's PostgreSQL scanner, which decodes the binary COPY
stream faster than the ADBC path: which columns it carries exactly, how its statement
selects them, and the read itself."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from deltaflow.config.secrets import redact
from deltaflow.connectors._common import conform_batch, scalar
from deltaflow.connectors.postgres.client import read_failure, secret_uri
from deltaflow.schema.mappings import quote_double, quote_single

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.config.connections import PostgresConnection
    from deltaflow.connectors.postgres.catalog import PgColumn
    from deltaflow.schema.types import LogicalType

log = logging.getLogger("deltaflow.postgres")

#: kinds DuckDB's PostgreSQL scanner carries as they are, value for value the same as ADBC
#: (tests/integration/test_postgres.py compares both readers); not dates (DuckDB cannot
#: hand over 'infinity' as Arrow); numerics are handled apart (``scanner_select``)
SCANNER_KINDS = frozenset(
    {"boolean", "int16", "int32", "int64", "float32", "float64", "string", "binary", "json"}
    | {"timestamp", "time"}
)


def scanner_carries(column: PgColumn) -> bool:
    """Whether DuckDB's scanner reads ``column`` exactly (with ``scanner_cast``)."""
    logical = column.logical
    if column.read_as or logical.kind == "decimal":
        return True
    if logical.kind == "list":
        return logical.item is not None and logical.item.kind in SCANNER_KINDS
    return logical.kind in SCANNER_KINDS


def scanner_cast(column: PgColumn) -> str | None:
    """The cast the scanner's statement reads ``column`` with, if any: the ADBC path's,
    and PostgreSQL's text for a numeric the scanner would turn into DOUBLE."""
    if column.read_as:
        return column.read_as
    if column.logical.kind == "decimal" and not _exact_decimal(column.logical):
        return "text"
    return None


def _exact_decimal(logical: LogicalType) -> bool:
    """A numeric(p,s) the scanner decodes to DECIMAL(p,s) itself (p <= 38)."""
    return logical.precision is not None and logical.precision <= 38


def scanner_select(column: PgColumn) -> str:
    """How the scanner's statement selects ``column``. A numeric(p,s) is decoded by the
    scanner, which would read a NaN as 0: a NaN stops the read instead, with an error
    that names the column (the text is built per row, so PostgreSQL cannot fold it)."""
    name = quote_double(column.name)
    cast = scanner_cast(column)
    if cast:
        return f"{name}::{cast}"
    logical = column.logical
    if logical.kind == "decimal":
        message = f" in numeric column {column.name} has no exact decimal form"
        return (
            f"(CASE WHEN {name} = 'NaN' THEN ({name}::text || {_escaped(message)})::numeric"
            f" ELSE {name} END)::numeric({logical.precision},{logical.scale or 0})"
        )
    return name


def _escaped(text: str) -> str:
    """An E'' string literal: safe whatever ``standard_conforming_strings`` says."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


@functools.cache
def scanner_extension() -> str | None:
    """The file of DuckDB's PostgreSQL scanner built for the installed DuckDB (the
    ``duckdb-extension-postgres_scanner`` package of the ``postgres`` extra), or None."""
    try:
        import duckdb
        import duckdb_extension_postgres_scanner as package
    except ImportError:
        return None
    path = (
        Path(package.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "postgres_scanner.duckdb_extension"
    )
    if not path.exists():
        log.info("no PostgreSQL scanner for DuckDB %s: reading with ADBC", duckdb.__version__)
        return None
    return str(path)


def scan(
    conn: PostgresConnection,
    statement: str,
    *,
    snapshot: str | None,
    batch_size: int,
    target: pa.Schema,
    stream: str,
    cancel: Callable[[int], None],
) -> Iterator[pa.RecordBatch]:
    """``statement`` (built with ``scanner_select``) run by DuckDB's ``postgres_query``
    in the run's ``snapshot``, streamed as Arrow batches of ``target``'s types. A read
    stopped early is ended with ``cancel(backend pid)``."""
    import duckdb

    uri = secret_uri(conn)
    con = duckdb.connect(config={"threads": 1})
    began, backend, finished = False, None, False
    try:
        con.execute(f"LOAD {quote_single(str(scanner_extension()))}")
        con.execute(f"ATTACH {quote_single(uri)} AS pg (TYPE postgres, READ_ONLY)")
        con.execute("BEGIN")
        began = True
        if snapshot:
            setup = (
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; "
                f"SET TRANSACTION SNAPSHOT '{snapshot}'"
            )
            con.execute(f"CALL postgres_execute('pg', {quote_single(setup)})")
        backend = scalar(con, "SELECT * FROM postgres_query('pg', 'SELECT pg_backend_pid()')")
        result = con.execute(f"SELECT * FROM postgres_query('pg', {quote_single(statement)})")
        for batch in result.to_arrow_reader(batch_size):
            yield conform_batch(batch, target)
        finished = True
    except Exception as exc:  # duckdb.Error, and OSError for a lost connection
        message = redact(str(exc).replace(uri, "the connection's URI"))
        raise read_failure(stream, message, exc) from None
    finally:
        if backend is not None and not finished:  # stopped early: end the COPY, the
            cancel(backend)  # rollback would otherwise read all of it
        if began:  # while the server is there: DuckDB would abort on a dead one later
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
        con.close()
