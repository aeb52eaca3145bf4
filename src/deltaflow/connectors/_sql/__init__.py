"""SQL the SQL engines (DuckDB, PostgreSQL and BigQuery) share, written once with each
engine's facts given as data:

- ``select``: the SELECT that reads a stream (table or query, columns, filter, the
  incremental window and the ``{start_timestamp}``/``{end_timestamp}`` placeholders);
- ``state``: the incremental-state methods of ``StatefulDestination``.

The schema-evolution decision lives in ``deltaflow.schema.evolution``.
Private to ``deltaflow.connectors``.
"""
