"""Every error DeltaFlow raises, with a stable code, a category and a retry class.

The tree::

    DeltaFlowError                      code, category, retryable, hint
    ├── ConfigError                     category "config", terminal
    │   ├── ConfigValidationError       one or more diagnostics (file, line, key path, hint)
    │   ├── PipelineNotFoundError
    │   ├── NoQualityStepError          ``check`` of a pipeline without quality steps
    │   ├── VariableError               an unresolved {variable}
    │   └── SecretError                 an unresolvable ${env:..} / ${file:..} reference
    ├── ConnectorError                  category "connector"
    │   ├── UnknownConnectorError
    │   ├── MissingDependencyError      an optional extra is not installed
    │   ├── ConnectionFailedError       retryable
    │   ├── ConnectionLostError         retryable: the server went away mid-work
    │   ├── SourceError
    │   └── DestinationError
    ├── SchemaError                     category "schema", terminal
    │   └── UnsupportedTypeError
    ├── LoadError                       category "load"
    ├── DataError                       category "data": rows that break the step's rules
    │   ├── QualityFailedError          critical checks failed (results in ``details``)
    │   ├── MetricError                 a metric failed (code: the framework's category)
    │   └── PartitionValidationError    a {partition_info} table has no usable partition
    ├── RunNotFoundError                category "run": no run has this id
    ├── StepFailedError                 category "run": a step of a pipeline failed
    │   ├── RunCancelledError           the run was asked to stop (a batch boundary)
    │   └── WorkerLostError             the worker holding a run stopped heartbeating
    └── ServiceError                    category "service": the pipeline service refused
        ├── NotFoundError               no such tenant, key, run or pipeline (for this tenant)
        ├── AuthError                   a missing, wrong, revoked or expired API key
        ├── ForbiddenError              the key's scopes do not allow the request
        ├── RateLimitedError            too many requests a minute for one key
        ├── QuotaExceededError          a tenant's concurrent runs or runs per day used up
        └── RunConflictError            the pipeline is already queued or running

``ConfigError`` also has ``JsonValidationError`` (metric definition files).
Every stable code is a member of ``Code``; an error's ``code`` is one of them.

Connectors map driver exceptions into these at their boundary (``raise ... from exc``);
retry policy looks at ``retryable`` only. Errors stay picklable so they can cross
process and worker boundaries.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

Category = Literal["config", "connector", "schema", "data", "load", "run", "service", "internal"]


class Code(enum.StrEnum):
    """Every stable error code. A code is part of the interface (run records, exit
    summaries, the API): add codes, never rename them."""

    DELTAFLOW_ERROR = "DELTAFLOW_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # configuration
    CONFIG_INVALID = "CONFIG_INVALID"
    CONFIG_NOT_FOUND = "CONFIG_NOT_FOUND"
    CONFIG_NO_QUALITY_STEP = "CONFIG_NO_QUALITY_STEP"
    CONFIG_RECONCILE_UNSUPPORTED = "CONFIG_RECONCILE_UNSUPPORTED"
    CONFIG_NOT_A_WAREHOUSE = "CONFIG_NOT_A_WAREHOUSE"
    CONFIG_PIPELINE_NOT_FOUND = "CONFIG_PIPELINE_NOT_FOUND"
    CONFIG_SECRET_UNRESOLVED = "CONFIG_SECRET_UNRESOLVED"
    CONFIG_VARIABLE_UNRESOLVED = "CONFIG_VARIABLE_UNRESOLVED"
    JSON_VALIDATION_ERROR = "JSON_VALIDATION_ERROR"
    # connectors
    CONNECTOR_ERROR = "CONNECTOR_ERROR"
    CONNECTOR_UNKNOWN = "CONNECTOR_UNKNOWN"
    DEPENDENCY_MISSING = "DEPENDENCY_MISSING"
    CONNECTION_FAILED = "CONNECTION_FAILED"
    CONNECTION_LOST = "CONNECTION_LOST"
    SOURCE_ERROR = "SOURCE_ERROR"
    DESTINATION_ERROR = "DESTINATION_ERROR"
    GCS_READ_ERROR = "GCS_READ_ERROR"
    # schema
    SCHEMA_ERROR = "SCHEMA_ERROR"
    SCHEMA_UNSUPPORTED_TYPE = "SCHEMA_UNSUPPORTED_TYPE"
    SCHEMA_CHANGE_REJECTED = "SCHEMA_CHANGE_REJECTED"
    # loads
    LOAD_FAILED = "LOAD_FAILED"
    LOAD_NO_PRIMARY_KEY = "LOAD_NO_PRIMARY_KEY"
    LOAD_NULL_PRIMARY_KEY = "LOAD_NULL_PRIMARY_KEY"
    LOAD_RECONCILIATION_FAILED = "LOAD_RECONCILIATION_FAILED"
    # data, quality and metrics
    DATA_ERROR = "DATA_ERROR"
    INCREMENTAL_NULL_CURSOR = "INCREMENTAL_NULL_CURSOR"
    QUALITY_CHECK_FAILED = "QUALITY_CHECK_FAILED"
    QUALITY_ROW_CHECK_FAILED = "QUALITY_ROW_CHECK_FAILED"
    PARTITION_VALIDATION_ERROR = "PARTITION_VALIDATION_ERROR"
    SQL_EXECUTION_ERROR = "SQL_EXECUTION_ERROR"
    BIGQUERY_WRITE_ERROR = "BIGQUERY_WRITE_ERROR"
    RECON_CREATION_ERROR = "RECON_CREATION_ERROR"
    PIPELINE_EXECUTION_ERROR = "PIPELINE_EXECUTION_ERROR"
    # runs
    STEP_FAILED = "STEP_FAILED"
    RUN_CANCELLED = "RUN_CANCELLED"
    RUN_NOT_FOUND = "RUN_NOT_FOUND"
    # the pipeline service
    NOT_FOUND = "NOT_FOUND"
    TENANT_NOT_FOUND = "TENANT_NOT_FOUND"
    AUTH_INVALID_KEY = "AUTH_INVALID_KEY"
    AUTH_FORBIDDEN = "AUTH_FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    RUN_CONFLICT = "RUN_CONFLICT"
    PIPELINE_NOT_FOUND = "PIPELINE_NOT_FOUND"
    WORKER_LOST = "WORKER_LOST"
    KEY_NOT_FOUND = "KEY_NOT_FOUND"
    REQUEST_INVALID = "REQUEST_INVALID"


__all__ = [
    "AuthError",
    "Category",
    "Code",
    "ConfigError",
    "ConfigValidationError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "ConnectorError",
    "DataError",
    "DeltaFlowError",
    "DestinationError",
    "Diagnostic",
    "ForbiddenError",
    "JsonValidationError",
    "LoadError",
    "MetricError",
    "MissingDependencyError",
    "NoQualityStepError",
    "NotFoundError",
    "PartitionValidationError",
    "PipelineNotFoundError",
    "QualityFailedError",
    "QuotaExceededError",
    "RateLimitedError",
    "RunCancelledError",
    "RunConflictError",
    "RunNotFoundError",
    "SchemaError",
    "SecretError",
    "ServiceError",
    "SourceError",
    "StepFailedError",
    "UnknownConnectorError",
    "UnsupportedTypeError",
    "VariableError",
    "WorkerLostError",
    "did_you_mean",
    "require",
]


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, or an empty string."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class DeltaFlowError(Exception):
    """Base of all DeltaFlow errors."""

    code: Code = Code.DELTAFLOW_ERROR
    category: ClassVar[Category] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, hint: str | None = None, code: Code | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = Code(code)  # a more specific code than the class default

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.hint}" if self.hint else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[DeltaFlowError], state: dict[str, Any]) -> DeltaFlowError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class ConfigError(DeltaFlowError):
    code = Code.CONFIG_INVALID
    category = "config"


class Diagnostic:
    """One problem found in a pipeline file."""

    __slots__ = ("file", "hint", "line", "message", "path")

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        file: str = "",
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.file = file
        self.line = line
        self.hint = hint

    def __str__(self) -> str:
        where = self.file or "<pipeline>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.path}:" if self.path else ""
        hint = f" Fix: {self.hint}" if self.hint else ""
        return f"{where}:{key} {self.message}{hint}"

    def __repr__(self) -> str:
        return f"Diagnostic({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_diagnostic, (self.message, self.path, self.file, self.line, self.hint))


def _diagnostic(
    message: str, path: str, file: str, line: int | None, hint: str | None
) -> Diagnostic:
    return Diagnostic(message, path=path, file=file, line=line, hint=hint)


class ConfigValidationError(ConfigError):
    """A pipeline file has one or more problems; ``diagnostics`` lists them all."""

    code = Code.CONFIG_INVALID

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        lines = "\n".join(f"  {d}" for d in diagnostics)
        noun = "problem" if len(diagnostics) == 1 else "problems"
        super().__init__(f"{len(diagnostics)} {noun} in the pipeline configuration:\n{lines}")


class PipelineNotFoundError(ConfigError):
    code = Code.CONFIG_PIPELINE_NOT_FOUND


class VariableError(ConfigError):
    code = Code.CONFIG_VARIABLE_UNRESOLVED


class SecretError(ConfigError):
    code = Code.CONFIG_SECRET_UNRESOLVED


class NoQualityStepError(ConfigError):
    """The pipeline has no quality step (of those asked for) to run."""

    code = Code.CONFIG_NO_QUALITY_STEP


class ConnectorError(DeltaFlowError):
    code = Code.CONNECTOR_ERROR
    category = "connector"


class UnknownConnectorError(ConnectorError):
    code = Code.CONNECTOR_UNKNOWN


class MissingDependencyError(ConnectorError):
    """An optional extra is not installed; the hint is the pip command that installs it."""

    code = Code.DEPENDENCY_MISSING


def require(extra: str, modules: Iterable[str], feature: str) -> None:
    """Raise ``MissingDependencyError`` naming ``pip install 'deltaflow[extra]'`` when one of
    ``modules`` (the drivers of an extra) cannot be imported; ``feature`` says what needs it."""
    import importlib.util

    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a missing parent package, or a blocked module
            found = False
        if not found:
            raise MissingDependencyError(
                f"{feature} needs the Python package '{name}', which is not installed",
                hint=f"pip install 'deltaflow[{extra}]'",
            )


class ConnectionFailedError(ConnectorError):
    code = Code.CONNECTION_FAILED
    retryable = True


class ConnectionLostError(ConnectorError):
    """The server closed the connection or went away in the middle of the work; what was
    committed is kept, so the step can be run again."""

    code = Code.CONNECTION_LOST
    retryable = True


class SourceError(ConnectorError):
    code = Code.SOURCE_ERROR


class DestinationError(ConnectorError):
    code = Code.DESTINATION_ERROR


class SchemaError(DeltaFlowError):
    code = Code.SCHEMA_ERROR
    category = "schema"


class UnsupportedTypeError(SchemaError):
    code = Code.SCHEMA_UNSUPPORTED_TYPE


class LoadError(DeltaFlowError):
    code = Code.LOAD_FAILED
    category = "load"


class DataError(DeltaFlowError):
    """Rows that break the step's rules (e.g. a NULL cursor with null_cursor: fail)."""

    code = Code.DATA_ERROR
    category = "data"


class RunNotFoundError(DeltaFlowError):
    """No run has this id (or the prefix matches several)."""

    code = Code.RUN_NOT_FOUND
    category = "run"


class StepFailedError(DeltaFlowError):
    code = Code.STEP_FAILED
    category = "run"


class QualityFailedError(DataError):
    """Critical checks failed; ``details`` holds every result, stored with the step."""

    code = Code.QUALITY_CHECK_FAILED

    def __init__(self, message: str, details: dict[str, Any], **kwargs: Any):
        super().__init__(message, **kwargs)
        self.details = details


class MetricError(DataError):
    """A metric that failed; ``code`` is one of the framework's error categories."""

    code = Code.SQL_EXECUTION_ERROR


class PartitionValidationError(DataError):
    """A table named by {partition_info} has no partition the metric can use."""

    code = Code.PARTITION_VALIDATION_ERROR


class JsonValidationError(ConfigError):
    """A metric definitions file has problems; ``problems`` lists every one."""

    code = Code.JSON_VALIDATION_ERROR

    def __init__(self, source: str, problems: list[Any]):
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"{len(problems)} problem(s) in the metric definitions {source}:\n{lines}",
            hint="fix each field named above; 'deltaflow metrics validate' lists them all",
        )
        self.problems = problems


class RunCancelledError(StepFailedError):
    """The run was asked to stop; it stopped at a batch boundary, its load rolled back."""

    code = Code.RUN_CANCELLED


class WorkerLostError(StepFailedError):
    """The worker that held a run stopped heartbeating (killed, or its machine lost)."""

    code = Code.WORKER_LOST
    retryable = True


class ServiceError(DeltaFlowError):
    """The pipeline service refused a request."""

    code = Code.REQUEST_INVALID
    category = "service"


class NotFoundError(ServiceError):
    """No such tenant, key, run or pipeline, or not one the caller may see: both read the
    same, so an answer never tells that another tenant's object exists. The code names
    what was looked for (TENANT_NOT_FOUND, RUN_NOT_FOUND, PIPELINE_NOT_FOUND, ...)."""

    code = Code.NOT_FOUND


class AuthError(ServiceError):
    """A missing, wrong, revoked or expired API key."""

    code = Code.AUTH_INVALID_KEY


class ForbiddenError(ServiceError):
    """The key is valid, but its scopes do not allow the request."""

    code = Code.AUTH_FORBIDDEN


class RateLimitedError(ServiceError):
    """More requests a minute than the key's tenant may send; retry after ``retry_after``."""

    code = Code.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: int = 60, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class QuotaExceededError(ServiceError):
    """A tenant's concurrent runs or runs per day are used up; the run was not queued."""

    code = Code.QUOTA_EXCEEDED


class RunConflictError(ServiceError):
    """The pipeline is already queued or running for the tenant; ``run_id`` names that run."""

    code = Code.RUN_CONFLICT

    def __init__(self, message: str, *, run_id: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.run_id = run_id
