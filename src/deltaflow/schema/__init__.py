"""Logical types, their Arrow form, and the per-engine mapping tables."""

from deltaflow.schema.mappings import (
    DUCKDB_TYPES,
    PARQUET_TYPES,
    POSTGRES_LOGICAL,
    POSTGRES_TYPES,
    duckdb_type,
    parquet_type,
    postgres_logical,
    postgres_type,
    quote_double,
)
from deltaflow.schema.types import Column, LogicalType, TableSchema, from_arrow, to_arrow

__all__ = [
    "DUCKDB_TYPES",
    "PARQUET_TYPES",
    "POSTGRES_LOGICAL",
    "POSTGRES_TYPES",
    "Column",
    "LogicalType",
    "TableSchema",
    "duckdb_type",
    "from_arrow",
    "parquet_type",
    "postgres_logical",
    "postgres_type",
    "quote_double",
    "to_arrow",
]
