"""The service fuzzed from its own OpenAPI document (schemathesis): every operation, with
the root admin key and with a tenant's key, answers no 500 and nothing its document
does not describe (status, content type, body schema, headers). Runs on the embedded
SQLite state with a fixed seed and a bounded number of examples per operation."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deltaflow.server import ServerSettings, create_app
from tests.support.service import ADMIN_KEY, client, wait_status, write_configs

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 40
"""Examples per operation and generation mode (each sent with both keys)."""
UNLIMITED = {"concurrent_runs": 1000, "runs_per_day": 1_000_000, "requests_per_minute": 1_000_000}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerSettings, dict[str, str]]:
    """Settings whose state holds a tenant ('acme') with a finished run; the keys by who
    sends them."""
    folder = tmp_path_factory.mktemp("fuzz")
    settings = ServerSettings(
        database=f"sqlite:///{folder / 'state' / 'service.db'}",
        configs=write_configs(folder / "configs"),
        state_dir=folder / "state",
        admin_key=ADMIN_KEY,
        heartbeat_s=0.1,
        drain_s=0.0,
    )
    root = {"X-API-Key": ADMIN_KEY}
    with client(create_app(settings)) as http:
        body = {"tenant_id": "acme", "quotas": UNLIMITED}
        tenant_key = http.post("/api/v1/tenants", json=body, headers=root).json()["api_key"]
        acme = {"X-API-Key": tenant_key}
        run = http.post("/api/v1/pipelines/run/acme/shop/numbers", json={}, headers=acme).json()
        wait_status(http, run["pipeline_logging_id"], acme)
    return settings, {"root admin": ADMIN_KEY, "tenant admin": tenant_key}


@pytest.mark.slow
def test_every_operation_answers_as_documented(
    prepared: tuple[ServerSettings, dict[str, str]],
) -> None:
    """Each operation of the document, with valid and with invalid requests, sent with the
    root admin's key and with the tenant's: every answer is one the document describes."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(prepared[0]))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14, [op.label for op in operations]
    failures: dict[str, str] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, list(prepared[1].values()))
            except Unsatisfiable:  # no request of this operation breaks its document
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (
                Exception,
                FailureGroup,
            ) as exc:  # collected: every operation is fuzzed, then all reported
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def fuzz(operation: Any, mode: GenerationMode, keys: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def each(case: Any) -> None:
        for key in keys:  # the root admin's, then the tenant's
            case.call_and_validate(headers={"X-API-Key": key}, checks=CHECKS)

    each()
