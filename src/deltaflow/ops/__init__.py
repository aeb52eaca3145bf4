"""Use cases that every front door calls: the command line today, the REST API next.

One module per group, each taking and returning plain typed values (dataclasses, the
library's records) and never printing:

- ``run``: run a pipeline, or only its quality checks
- ``validate``: check pipeline files; the JSON Schema of the format
- ``runs``: the run store's recent runs and one run with its steps
- ``state``: incremental state (watermarks): show, set, reset
- ``reconcile``: compare a sync step's source and destination tables
- ``quarantine``: quarantined records: list, show, replay, purge
- ``metrics``: validate a metric definitions file; run metrics for a date

Connections opened for a use case are closed before it returns, on failure too.
"""
