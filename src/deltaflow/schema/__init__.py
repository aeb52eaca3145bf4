"""Logical types, their Arrow form, and the per-engine mapping tables."""

from deltaflow.schema.mappings import (
    BIGQUERY_TYPES,
    DUCKDB_TYPES,
    MONGODB_LOGICAL,
    PARQUET_TYPES,
    POSTGRES_LOGICAL,
    POSTGRES_TYPES,
    bigquery_type,
    duckdb_type,
    parquet_type,
    postgres_logical,
    postgres_type,
    quote_backtick,
    quote_double,
)
from deltaflow.schema.types import Column, LogicalType, TableSchema, from_arrow, to_arrow

__all__ = [
    "BIGQUERY_TYPES",
    "DUCKDB_TYPES",
    "MONGODB_LOGICAL",
    "PARQUET_TYPES",
    "POSTGRES_LOGICAL",
    "POSTGRES_TYPES",
    "Column",
    "LogicalType",
    "TableSchema",
    "bigquery_type",
    "duckdb_type",
    "from_arrow",
    "parquet_type",
    "postgres_logical",
    "postgres_type",
    "quote_backtick",
    "quote_double",
    "to_arrow",
]
