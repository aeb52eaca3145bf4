"""Every error DeltaFlow raises, with a stable code, a category and a retry class.

The tree::

    DeltaFlowError                      code, category, retryable, hint
    ├── ConfigError                     category "config", terminal
    │   ├── ConfigValidationError       one or more diagnostics (file, line, key path, hint)
    │   ├── PipelineNotFoundError
    │   ├── VariableError               an unresolved {variable}
    │   └── SecretError                 an unresolvable ${env:..} / ${file:..} reference
    ├── ConnectorError                  category "connector"
    │   ├── UnknownConnectorError
    │   ├── MissingDependencyError      an optional extra is not installed
    │   ├── ConnectionFailedError       retryable
    │   ├── SourceError
    │   └── DestinationError
    ├── SchemaError                     category "schema", terminal
    │   └── UnsupportedTypeError
    ├── LoadError                       category "load"
    └── StepFailedError                 category "run": a step of a pipeline failed

Connectors map driver exceptions into these at their boundary (``raise ... from exc``);
retry policy looks at ``retryable`` only. Errors stay picklable so they can cross
process and worker boundaries.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

Category = Literal["config", "connector", "schema", "data", "load", "run", "internal"]

__all__ = [
    "Category",
    "ConfigError",
    "ConfigValidationError",
    "ConnectionFailedError",
    "ConnectorError",
    "DeltaFlowError",
    "DestinationError",
    "Diagnostic",
    "LoadError",
    "MissingDependencyError",
    "PipelineNotFoundError",
    "SchemaError",
    "SecretError",
    "SourceError",
    "StepFailedError",
    "UnknownConnectorError",
    "UnsupportedTypeError",
    "VariableError",
    "did_you_mean",
]


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, or an empty string."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class DeltaFlowError(Exception):
    """Base of all DeltaFlow errors."""

    code: str = "DELTAFLOW_ERROR"
    category: ClassVar[Category] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code  # a more specific code than the class default

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
    code = "CONFIG_INVALID"
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

    code = "CONFIG_INVALID"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        lines = "\n".join(f"  {d}" for d in diagnostics)
        noun = "problem" if len(diagnostics) == 1 else "problems"
        super().__init__(f"{len(diagnostics)} {noun} in the pipeline configuration:\n{lines}")


class PipelineNotFoundError(ConfigError):
    code = "CONFIG_PIPELINE_NOT_FOUND"


class VariableError(ConfigError):
    code = "CONFIG_VARIABLE_UNRESOLVED"


class SecretError(ConfigError):
    code = "CONFIG_SECRET_UNRESOLVED"


class ConnectorError(DeltaFlowError):
    code = "CONNECTOR_ERROR"
    category = "connector"


class UnknownConnectorError(ConnectorError):
    code = "CONNECTOR_UNKNOWN"


class MissingDependencyError(ConnectorError):
    code = "DEPENDENCY_MISSING"


class ConnectionFailedError(ConnectorError):
    code = "CONNECTION_FAILED"
    retryable = True


class SourceError(ConnectorError):
    code = "SOURCE_ERROR"


class DestinationError(ConnectorError):
    code = "DESTINATION_ERROR"


class SchemaError(DeltaFlowError):
    code = "SCHEMA_ERROR"
    category = "schema"


class UnsupportedTypeError(SchemaError):
    code = "SCHEMA_UNSUPPORTED_TYPE"


class LoadError(DeltaFlowError):
    code = "LOAD_FAILED"
    category = "load"


class DataError(DeltaFlowError):
    """Rows that break the step's rules (e.g. a NULL cursor with null_cursor: fail)."""

    code = "DATA_ERROR"
    category = "data"


class StepFailedError(DeltaFlowError):
    code = "STEP_FAILED"
    category = "run"
