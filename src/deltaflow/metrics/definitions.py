"""Metric definitions: the Metrics framework's JSON, read and validated.

A file holds a list of metrics (or one metric), each with ``metric_id``, ``metric_name``,
``metric_type``, ``sql``, ``dependency`` and ``target_table``. It is read from a local
path or ``gs://`` (through fsspec/gcsfs) and validated as a whole: every problem is
reported at once, each with the metric id and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from deltaflow.errors import Code, ConfigError, JsonValidationError, require
from deltaflow.metrics.dialect import ENGINES, refusals

FIELDS = ("metric_id", "metric_name", "metric_type", "sql", "dependency", "target_table")
METRIC_TYPES = ("ratio", "count", "sum", "average")
PLACEHOLDERS = ("currently", "partition_info")
_ID = re.compile(r"^[A-Za-z0-9_]+$")
_TABLE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){1,2}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
#: the columns a metric's SQL must return
OUTPUTS = ("metric_output", "numerator_value", "denominator_value", "business_data_date")


@dataclass(frozen=True)
class Metric:
    metric_id: str
    metric_name: str
    metric_type: str
    sql: str
    dependency: str
    target_table: str


@dataclass(frozen=True)
class Problem:
    metric_id: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.metric_id}: {self.field}: {self.message}"


def read_text(path: str) -> str:
    """The file's text, from a local path or gs:// (GCS through fsspec)."""
    if path.startswith("gs://"):
        require("gcs", ("fsspec", "gcsfs"), "reading metric definitions from gs://")
    try:
        if path.startswith("gs://"):
            import os

            import fsspec

            if os.environ.get("STORAGE_EMULATOR_HOST"):  # no emulator answers this probe
                os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

            with fsspec.open(path, "r", encoding="utf-8") as handle:
                return str(handle.read())
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except Exception as exc:  # any reader's failure: missing file, no access, no network
        raise ConfigError(
            f"cannot read metric definitions {path}: {type(exc).__name__}: {exc}",
            hint="check the path and, for gs://, the credentials and the bucket",
            code=Code.GCS_READ_ERROR if path.startswith("gs://") else Code.CONFIG_NOT_FOUND,
        ) from None


def load(path: str, dialect: str = "bigquery") -> list[Metric]:
    """Read and validate the definitions; every problem is raised at once."""
    metrics, problems = parse(read_text(path), dialect)
    if problems:
        raise JsonValidationError(path, problems)
    return metrics


def parse(text: str, dialect: str = "bigquery") -> tuple[list[Metric], list[Problem]]:
    """The metrics of a definitions file, and its problems (all of them)."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [Problem("(file)", "json", f"not JSON: {exc}")]
    if isinstance(data, dict):
        data = data.get("metrics", [data])
    if not isinstance(data, list) or not data:
        return [], [Problem("(file)", "metrics", "expected a list of metric objects")]
    problems: list[Problem] = []
    metrics: list[Metric] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(data):
        where = f"#{index + 1}"
        if not isinstance(item, dict):
            problems.append(Problem(where, "(metric)", "is not an object"))
            continue
        metric_id = item.get("metric_id")
        name = metric_id if isinstance(metric_id, str) and metric_id else where
        found = _check(item, name, dialect)
        if isinstance(metric_id, str) and metric_id:
            if metric_id in seen:
                found.append(
                    Problem(name, "metric_id", f"duplicate of metric #{seen[metric_id] + 1}")
                )
            seen.setdefault(metric_id, index)
        problems += found
        if not found:
            metrics.append(Metric(**{f: str(item[f]).strip() for f in FIELDS}))
    return metrics, problems


def _check(item: dict[str, Any], name: str, dialect: str) -> list[Problem]:
    problems = []
    for field in FIELDS:
        value = item.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(Problem(name, field, "is required and empty or missing"))
        elif not isinstance(value, str):
            problems.append(Problem(name, field, f"must be text, not {type(value).__name__}"))
    unknown = sorted(set(item) - set(FIELDS))
    for field in unknown:
        problems.append(Problem(name, field, f"is not a metric field ({', '.join(FIELDS)})"))
    text = {f: item[f].strip() for f in FIELDS if isinstance(item.get(f), str)}
    metric_id = text.get("metric_id")
    if metric_id and not _ID.match(metric_id):
        problems.append(Problem(name, "metric_id", "use letters, digits and underscores"))
    if metric_id and len(metric_id) > 100:
        problems.append(Problem(name, "metric_id", "is longer than 100 characters"))
    if len(text.get("metric_name", "")) > 255:
        problems.append(Problem(name, "metric_name", "is longer than 255 characters"))
    kind = text.get("metric_type")
    if kind and kind not in METRIC_TYPES:
        problems.append(
            Problem(name, "metric_type", f"'{kind}' is not one of {', '.join(METRIC_TYPES)}")
        )
    table = text.get("target_table")
    if table and not _TABLE.match(table):
        problems.append(
            Problem(
                name, "target_table", f"'{table}' is not dataset.table or project.dataset.table"
            )
        )
    sql = text.get("sql")
    if sql:
        for placeholder in _PLACEHOLDER.findall(sql):
            if placeholder not in PLACEHOLDERS:
                problems.append(
                    Problem(
                        name,
                        "sql",
                        f"unknown placeholder {{{placeholder}}}; "
                        "use {currently} or {partition_info}",
                    )
                )
        problems += _check_sql(sql, name, dialect)
    return problems


def _check_sql(sql: str, name: str, dialect: str) -> list[Problem]:
    """The SQL parses (in its dialect, placeholders filled), names the four outputs and
    uses no function refused on DuckDB or PostgreSQL (``deltaflow.metrics.refused``)."""
    import sqlglot

    from deltaflow.metrics.placeholders import fill_for_parsing

    try:
        tree = sqlglot.parse_one(fill_for_parsing(sql), read=dialect)
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        return [Problem(name, "sql", f"does not parse: {first}")]
    names = {s.alias_or_name for s in getattr(tree, "selects", [])}
    missing = [c for c in OUTPUTS if c not in names]
    problems = []
    if missing and "*" not in names:
        problems.append(Problem(name, "sql", f"must return {', '.join(missing)}"))
    for engine in ENGINES:  # one definitions file runs on every environment's warehouse
        problems += [Problem(name, "sql", message) for message in refusals(tree, engine, dialect)]
    return problems


def select(metrics: list[Metric], dependencies: list[str]) -> list[Metric]:
    """The metrics of these dependency groups (all when none are named); a group that
    no metric has is an error."""
    if not dependencies:
        return list(metrics)
    groups = {m.dependency for m in metrics}
    unknown = [d for d in dependencies if d not in groups]
    if unknown:
        raise ConfigError(
            f"dependency groups {', '.join(unknown)} are not in the definitions",
            hint=f"groups defined: {', '.join(sorted(groups))}",
            code=Code.JSON_VALIDATION_ERROR,
        )
    return [m for m in metrics if m.dependency in dependencies]
