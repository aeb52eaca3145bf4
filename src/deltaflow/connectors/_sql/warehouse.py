"""What the SQL warehouses share, written once: identifier quoting, table references in
the default schema, and the canonical text of a value that reconciliation fingerprints.

An engine subclasses ``SqlWarehouse`` and gives its facts: ``kind``, ``dialect``,
``default_schema``, how it writes a float, a UTC timestamp and any other value as text,
its md5 prefix as an integer, its integer division; and how it runs SQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from deltaflow.connectors.protocol import split_table
from deltaflow.schema.mappings import quote_double

if TYPE_CHECKING:
    import pyarrow as pa

    from deltaflow.connectors.protocol import RunResources


class SqlWarehouse(ABC):
    """The parts of ``Warehouse`` that are the same on every SQL engine."""

    kind: str
    dialect: str
    default_schema: str

    def __init__(self, conn: Any, resources: RunResources) -> None:
        self.conn = conn
        self.resources = resources

    def quote(self, name: str) -> str:
        """``"name"``, embedded quotes doubled."""
        return quote_double(name)

    def table_ref(self, table: str) -> str:
        """``"schema"."table"``; a bare name is in the default schema."""
        schema, name = split_table(table, self.default_schema)
        return f"{self.quote(schema)}.{self.quote(name)}"

    def text_sql(self, column: str, dtype: pa.DataType) -> str:
        """The canonical text of the named column's value: floats at 6 decimal places,
        timestamps in UTC with microseconds, the rest as the engine writes it; NULL as \\N."""
        import pyarrow as pa

        name = self.quote(column)
        if pa.types.is_floating(dtype):
            cast = self.float_text(name)
        elif pa.types.is_timestamp(dtype):
            cast = self.timestamp_text(f"({name} AT TIME ZONE 'UTC')" if dtype.tz else name)
        else:
            cast = self.value_text(name)
        return f"coalesce({cast}, '\\N')"

    @abstractmethod
    def float_text(self, name: str) -> str:
        """A float at 6 decimal places (engines write floats differently: 334.0 and 334,
        2500000000000000.0 and 2.5e+15), NaN and infinities by name."""

    @abstractmethod
    def timestamp_text(self, utc: str) -> str:
        """A UTC timestamp as ``YYYY-MM-DD HH:MM:SS.ffffff``."""

    @abstractmethod
    def value_text(self, name: str) -> str:
        """Any other value as the engine writes it."""
