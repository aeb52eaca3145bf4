"""Tenant isolation as a property: for generated tenants, keys of every scope, pipeline
files in each tenant's own config folder and runs (finished, running and queued), a key of
tenant A never reads, lists, runs, cancels or learns the existence of anything of tenant
B, on any endpoint of the app.

The endpoints are taken from ``app.routes``: each path parameter is filled with B's
object and, for comparison, with an id that names nothing; B's answer, with B's ids
replaced by the unknown ones, must be exactly the unknown one's (a 404, or a 403 where
the key's scope or the tenant-level admin path refuses first). A new endpoint is covered
without touching this file; a new kind of path parameter fails here until it is named.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from deltaflow.server import ServerSettings, create_app
from tests.support.service import ADMIN_KEY, client, wait_status, write_configs

ROOT = {"X-API-Key": ADMIN_KEY}
SCOPE_SETS = [["read"], ["run"], ["admin"], ["read", "run"]]
UNLIMITED = {"concurrent_runs": 50, "runs_per_day": 10_000, "requests_per_minute": 1_000_000}

OWN_PIPELINE = """\
pipeline_id: "{{tenant_id}}-{name}"
description: "{marker}"
connections:
  wh: {{type: duckdb, path: "{{tenant_id}}-{name}.duckdb"}}
steps:
  - step_id: load
    type: sync
    source: {{connection: wh, query: "SELECT range AS id, '{marker}' AS tag FROM range(10)"}}
    destination: {{connection: wh, table: raw.{name}, write_mode: replace}}
"""


@dataclass(frozen=True)
class Endpoint:
    """One operation of the app: its full path template, its method, its route."""

    path: str
    method: str
    route: APIRoute


def endpoints(app: Any) -> list[Endpoint]:
    """Every API operation of the app, from ``app.routes`` (routers included under a
    prefix are walked with their prefix)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # a FastAPI that keeps included routes flat
        found = [(r.path_format, r.methods, r) for r in app.routes if isinstance(r, APIRoute)]
    else:
        found = [
            (c.path_format, c.methods, c.original_route)
            for c in iter_route_contexts(app.routes)
            if isinstance(c.original_route, APIRoute)
        ]
    return [Endpoint(path, m, route) for path, methods, route in found for m in sorted(methods)]


@dataclass
class Tenant:
    """One generated tenant and everything it made: what another tenant must never see."""

    tenant_id: str
    pipelines: list[str]
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    """key id -> X-API-Key header, by scopes."""
    key_scopes: dict[str, list[str]] = field(default_factory=dict)
    prefixes: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    idempotency_keys: list[str] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return next(h for k, h in self.keys.items() if "admin" in self.key_scopes[k])

    def markers(self) -> list[str]:
        """Strings that exist only because of this tenant."""
        return [self.tenant_id, *self.pipelines, *self.keys, *self.prefixes, *self.runs]


tenant_plans = st.lists(
    st.fixed_dictionaries(
        {
            "suffix": st.from_regex(r"[a-z0-9]{2,6}", fullmatch=True),
            "pipelines": st.lists(
                st.from_regex(r"[a-z]{1,5}(/[a-z]{1,5})?", fullmatch=True),
                min_size=1,
                max_size=2,
                unique=True,
            ),
            "scopes": st.lists(st.sampled_from(range(len(SCOPE_SETS))), max_size=2),
            "finished_runs": st.integers(0, 2),
            "slow_run": st.booleans(),
            "idempotency_key": st.none() | st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True),
        }
    ),
    min_size=2,
    max_size=3,
)


@pytest.mark.slow
@settings(
    max_examples=5,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a found case is printed as is
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plans=tenant_plans)
def test_a_tenants_key_never_reaches_another_tenants_objects(plans: list[dict[str, Any]]) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="deltaflow-isolation-") as folder,
        service(Path(folder), plans) as (app, api, tenants),
    ):
        routes = endpoints(app)
        assert len(routes) >= 14, [(r.method, r.path) for r in routes]
        before = {t.tenant_id: view(api, t) for t in tenants}
        for a, b in itertools.permutations(tenants, 2):
            for headers in a.keys.values():
                for route in routes:
                    probe(api, route, a, b, headers)
            tried_alongside(api, a, b)
        after = {t.tenant_id: view(api, t) for t in tenants}
        for tenant in tenants:
            assert after[tenant.tenant_id] == before[tenant.tenant_id] | {
                "runs": after[tenant.tenant_id]["runs"]
            }
            own = after[tenant.tenant_id]["runs"]
            assert set(own) >= set(tenant.runs), "another tenant's request removed a run"
            assert not any(own[r]["cancel_requested"] for r in tenant.runs), tenant.tenant_id


@contextmanager
def service(folder: Path, plans: list[dict[str, Any]]) -> Iterator[tuple[Any, Any, list[Tenant]]]:
    """An app on SQLite whose tenants made what ``plans`` say; their runs are stopped at
    the end."""
    configs = write_configs(folder / "configs")
    settings = ServerSettings(
        database=f"sqlite:///{folder / 'state' / 'service.db'}",
        configs=configs,
        state_dir=folder / "state",
        admin_key=ADMIN_KEY,
        workers=1,  # one slow run keeps it busy: the others stay queued
        heartbeat_s=0.1,
        drain_s=0.0,
    )
    app = create_app(settings)
    with client(app) as api:
        tenants = [make_tenant(api, configs, i, plan) for i, plan in enumerate(plans)]
        for tenant, plan in zip(tenants, plans, strict=True):
            if plan["slow_run"]:  # the first one runs while probed, the others wait queued
                trigger(api, tenant, "shop/slow", tenant.admin)
        try:
            yield app, api, tenants
        finally:
            for tenant in tenants:
                for run_id in tenant.runs:
                    api.post(f"/api/v1/runs/{run_id}/cancel", headers=tenant.admin)


def make_tenant(api: Any, configs: Path, i: int, plan: dict[str, Any]) -> Tenant:
    """Onboard tenant ``i`` with its own pipeline files, its keys and its runs."""
    tenant_id = f"t{i}{plan['suffix']}"
    pipelines = [f"p{i}x{name}" for name in plan["pipelines"]]
    for path in pipelines:
        file = configs / tenant_id / f"{path}.yml"
        file.parent.mkdir(parents=True, exist_ok=True)
        table = path.replace("/", "_")
        file.write_text(OWN_PIPELINE.format(name=table, marker=f"{tenant_id} {path}"))
    body = {"tenant_id": tenant_id, "quotas": UNLIMITED}
    onboarded = api.post("/api/v1/tenants", json=body, headers=ROOT)
    assert onboarded.status_code == 201, onboarded.text
    tenant = Tenant(tenant_id, pipelines)
    remember_key(tenant, onboarded.json()["key"], onboarded.json()["api_key"])
    for scopes in (SCOPE_SETS[n] for n in plan["scopes"]):
        made = api.post(
            f"/api/v1/tenants/{tenant_id}/keys", json={"scopes": scopes}, headers=tenant.admin
        )
        assert made.status_code == 201, made.text
        remember_key(tenant, made.json()["key"], made.json()["api_key"])
    listed = api.get("/api/v1/pipelines", headers=tenant.admin).json()
    assert [p["path"] for p in listed] == sorted([*pipelines, "shop/numbers", "shop/slow"])
    for n in range(plan["finished_runs"]):
        headers = dict(tenant.admin)
        if n == 0 and plan["idempotency_key"]:
            headers["Idempotency-Key"] = plan["idempotency_key"]
            tenant.idempotency_keys.append(plan["idempotency_key"])
        run_id = trigger(api, tenant, [*pipelines, "shop/numbers"][n], headers)
        assert wait_status(api, run_id, tenant.admin)["status"] == "succeeded"
    return tenant


def remember_key(tenant: Tenant, record: dict[str, Any], key: str) -> None:
    tenant.keys[record["key_id"]] = {"X-API-Key": key}
    tenant.key_scopes[record["key_id"]] = record["scopes"]
    tenant.prefixes.append(record["prefix"])


def trigger(api: Any, tenant: Tenant, pipeline: str, headers: dict[str, str]) -> str:
    answer = api.post(
        f"/api/v1/pipelines/run/{tenant.tenant_id}/{pipeline}",
        json={"allow_concurrent": True},
        headers=headers,
    )
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["pipeline_logging_id"]
    tenant.runs.append(run_id)
    return run_id


# ---------------------------------------------------------------------- probing

GHOST_TENANT = "tghost"
GHOST_RUN = "f" * 32
GHOST_KEY = "key_" + "0" * 16
GHOST_PIPELINE = "nowhere/nothing"


def choices(name: str, a: Tenant, b: Tenant) -> tuple[Any, list[str], str]:
    """For a parameter: A's own value (None: left out), B's values, the value naming
    nothing."""
    if name in ("tenant_id", "query.tenant_id", "body.tenant_id"):
        own = None if name == "query.tenant_id" else a.tenant_id
        return own, [b.tenant_id], GHOST_TENANT
    if name == "run_id":
        return (a.runs or [GHOST_RUN])[0], b.runs[-2:], GHOST_RUN
    if name == "key_id":
        return next(iter(a.keys)), list(b.keys)[-1:], GHOST_KEY
    if name == "pipeline_path":
        theirs = b.pipelines + [f"{b.tenant_id}/{p}" for p in b.pipelines]
        return "shop/numbers", theirs, GHOST_PIPELINE
    raise AssertionError(
        f"the route parameter '{name}' is new: tell choices() how to name another tenant's "
        "object with it, so that the new endpoint is covered"
    )


def parameters(endpoint: Endpoint) -> list[str]:
    route = endpoint.route
    names = list(route.param_convertors)
    names += [f"query.{q.name}" for q in route.dependant.query_params if q.name == "tenant_id"]
    if route.body_field is not None and "tenant_id" in _body_fields(route):
        names.append("body.tenant_id")
    return names


def _body_fields(route: APIRoute) -> set[str]:
    assert route.body_field is not None
    model = route.body_field.field_info.annotation
    return set(getattr(model, "model_fields", {}))


def request_for(endpoint: Endpoint, values: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The method, URL and keyword arguments of a call to ``endpoint`` with ``values``."""
    route, path = endpoint.route, endpoint.path
    for name, value in values.items():
        if not name.startswith(("query.", "body.")):
            path = path.replace("{" + name + "}", str(value))
    params = {
        n.removeprefix("query."): v
        for n, v in values.items()
        if n.startswith("query.") and v is not None
    }
    kwargs: dict[str, Any] = {"params": params}
    if route.body_field is not None:
        body: dict[str, Any] = {"scopes": ["read"]} if "scopes" in _body_fields(route) else {}
        if "body.tenant_id" in values:
            body["tenant_id"] = values["body.tenant_id"]
        kwargs["json"] = body
    elif endpoint.method == "POST":
        kwargs["content"] = "pipeline_id: probe\nsteps: []\n"
    return endpoint.method, path, kwargs


def probe(api: Any, route: Endpoint, a: Tenant, b: Tenant, headers: dict[str, str]) -> None:
    """Every way of naming B's objects through ``route`` answers as if they did not
    exist; A's own view through it shows nothing of B."""
    names = parameters(route)
    options = {n: choices(n, a, b) for n in names}
    unknown: dict[str, Any] = {}  # the answers for ids naming nothing, by URL
    for picked in itertools.product(*([own, *theirs] for own, theirs, _ in options.values())):
        values = dict(zip(names, picked, strict=True))
        swapped = {
            v: options[n][2] for n, v in values.items() if v is not None and v in options[n][1]
        }
        method, path, kwargs = request_for(route, values)
        if not swapped:
            if method == "GET":  # A's own view: never a trace of B
                answer = api.request(method, path, headers=headers, **kwargs)
                assert answer.status_code < 500, (path, answer.text)
                assert_no_trace(answer.text, b, path)
            continue
        ghost_values = {n: swapped.get(v, v) if v is not None else v for n, v in values.items()}
        answer = api.request(method, path, headers=headers, **kwargs)
        ghost_method, ghost_path, ghost_kwargs = request_for(route, ghost_values)
        seen = json.dumps([ghost_path, ghost_kwargs], sort_keys=True)
        if seen not in unknown:
            unknown[seen] = api.request(ghost_method, ghost_path, headers=headers, **ghost_kwargs)
        expected = unknown[seen]
        where = f"{method} {path} {kwargs} as {a.tenant_id} ({a.key_scopes[key_of(a, headers)]})"
        assert answer.status_code in (403, 404), (where, answer.status_code, answer.text)
        assert answer.status_code == expected.status_code, (where, answer.text, expected.text)
        assert json.loads(replaced(answer.text, swapped)) == expected.json(), where
        assert_no_trace(replaced(answer.text, swapped), b, where)


def key_of(tenant: Tenant, headers: dict[str, str]) -> str:
    return next(k for k, h in tenant.keys.items() if h == headers)


def replaced(text: str, swapped: dict[str, str]) -> str:
    for value in sorted(swapped, key=len, reverse=True):
        text = text.replace(value, swapped[value])
    return text


def assert_no_trace(text: str, b: Tenant, where: str) -> None:
    found = [m for m in b.markers() if m in text]
    assert not found, f"{where}: the answer shows {found} of tenant {b.tenant_id}: {text[:500]}"


def tried_alongside(api: Any, a: Tenant, b: Tenant) -> None:
    """What A does with its own pipelines is not steered by B's: B's idempotency keys name
    no run for A, and B's running pipelines are no conflict for A."""
    for key in b.idempotency_keys:
        headers = {**a.admin, "Idempotency-Key": key}
        answer = api.post(
            f"/api/v1/pipelines/run/{a.tenant_id}/shop/numbers",
            json={"allow_concurrent": True},
            headers=headers,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["tenant_id"] == a.tenant_id
        if key not in a.idempotency_keys:
            assert answer.json()["created"] is True, answer.text
            a.idempotency_keys.append(key)
        assert answer.json()["pipeline_logging_id"] not in b.runs
        a.runs.append(answer.json()["pipeline_logging_id"])
        assert_no_trace(answer.text, b, "trigger with B's idempotency key")


def view(api: Any, tenant: Tenant) -> dict[str, Any]:
    """The tenant as the root admin sees it: record, keys (without last use) and runs."""
    record = api.get(f"/api/v1/tenants/{tenant.tenant_id}", headers=ROOT).json()
    keys = api.get(f"/api/v1/tenants/{tenant.tenant_id}/keys", headers=ROOT).json()
    runs = api.get(f"/api/v1/runs?tenant_id={tenant.tenant_id}&limit=500", headers=ROOT).json()
    return {
        "tenant": record,
        "keys": [{k: v for k, v in key.items() if k != "last_used_at"} for key in keys],
        "runs": {r["pipeline_logging_id"]: r for r in runs["runs"]},
    }
