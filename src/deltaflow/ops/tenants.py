"""Tenants: onboard one (its record, its first key, its schema in its warehouse), show one.

Onboarding twice is harmless: the second call finds the tenant and creates no second key
unless asked. A tenant's warehouse connection is stored as given, so its secrets must be
``${env:..}`` / ``${file:..}`` references: a literal password is refused, never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deltaflow.config import secrets
from deltaflow.errors import Code, ConfigError, NotFoundError, SecretError, ServiceError
from deltaflow.metadata.service_records import Quotas, TenantRecord
from deltaflow.ops.keys import NewKey, create_key
from deltaflow.ops.service import Service

if TYPE_CHECKING:
    from deltaflow.config.connections import ConnectionBase

TENANT_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Onboarding:
    """What onboarding did: the tenant, whether it was new, and a key if one was made."""

    tenant: TenantRecord
    created: bool
    key: NewKey | None


def onboard_tenant(
    svc: Service,
    tenant_id: str,
    *,
    name: str = "",
    warehouse: dict[str, Any] | None = None,
    meta_schema: str | None = None,
    quotas: Quotas | None = None,
    new_key: bool = False,
) -> Onboarding:
    """Record the tenant with a first ``admin`` key and prepare its warehouse; for a
    tenant that exists, return it (with a new key only when ``new_key``)."""
    _check_id(tenant_id)
    schema = meta_schema or tenant_id
    if warehouse is not None:
        _check_references(warehouse)
    _prepare_warehouse(svc, warehouse, schema)
    record = TenantRecord(
        tenant_id, name or tenant_id, schema, warehouse, quotas or Quotas(**vars(svc.quotas))
    )
    tenant, created = svc.store.add_tenant(record)
    key = create_key(svc, tenant_id, ["admin"], "first key") if created or new_key else None
    return Onboarding(tenant, created, key)


def get_tenant(svc: Service, tenant_id: str) -> TenantRecord:
    tenant = svc.store.tenant(tenant_id)
    if tenant is None:
        raise NotFoundError(f"no tenant '{tenant_id}'", code=Code.TENANT_NOT_FOUND)
    return tenant


def _prepare_warehouse(svc: Service, warehouse: dict[str, Any] | None, schema: str) -> None:
    """Create the tenant's schema (or dataset) in its warehouse (the service's default
    one when it has none), and in it the metadata tables ``x_meta_pipeline_runs``,
    ``x_meta_step_logs`` and ``x_meta_dq_results``."""
    from deltaflow.connectors.protocol import RunResources
    from deltaflow.metadata.warehouse_meta import ensure_meta_tables
    from deltaflow.ops.tenant_meta import tenant_warehouse

    given = TenantRecord("", "", schema, warehouse)
    conn = tenant_connection(svc, tenant_warehouse(svc, given))
    resources = RunResources(svc.configs, "onboarding")
    try:
        ensure_meta_tables(conn, resources, schema)
    finally:
        resources.close()


def tenant_connection(svc: Service, warehouse: dict[str, Any]) -> ConnectionBase:
    """The warehouse's connection model, its secret references resolved."""
    from pydantic import TypeAdapter, ValidationError

    from deltaflow.config.connections import Connection

    problems: list[str] = []

    def failed(path: tuple[str | int, ...], error: SecretError) -> None:
        problems.append(f"{'.'.join(map(str, path))}: {error.message}")

    resolved = secrets.resolve_tree(warehouse, svc.configs, failed)
    if problems:
        raise ConfigError(
            f"the warehouse connection's secrets cannot be resolved: {'; '.join(problems)}",
            hint="set the referenced environment variables or files on the service's machine",
            code=Code.CONFIG_SECRET_UNRESOLVED,
        )
    try:
        conn: ConnectionBase = TypeAdapter(Connection).validate_python(resolved)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ConfigError(
            f"the warehouse connection is not valid: {where}: {secrets.redact(first['msg'])}",
            hint="give a connection as in a pipeline file, e.g. {'type': 'duckdb', 'path': ...}",
        ) from None
    return conn


def _check_id(tenant_id: str) -> None:
    if not TENANT_ID.match(tenant_id):
        raise ServiceError(
            f"tenant id '{tenant_id}' is not valid",
            hint="use a lower-case letter, then up to 62 lower-case letters, digits or '_'",
        )


def _check_references(warehouse: dict[str, Any]) -> None:
    """Refuse a secret field holding a literal value: only references are stored."""
    from pydantic import SecretStr

    from deltaflow.config.connections import CONNECTION_MODELS

    model = CONNECTION_MODELS.get(str(warehouse.get("type")))
    if model is None:
        choices = ", ".join(sorted(CONNECTION_MODELS))
        raise ConfigError(
            f"the warehouse connection's type '{warehouse.get('type')}' is not known",
            hint=f"use one of: {choices}",
        )
    for name, info in model.model_fields.items():
        value = warehouse.get(name)
        is_secret = SecretStr in getattr(info.annotation, "__args__", (info.annotation,))
        if is_secret and value is not None and not secrets.has_reference(str(value)):
            raise ConfigError(
                f"the warehouse connection's '{name}' is a literal secret; the service stores "
                "only references",
                hint=f"give it as a reference, e.g. '${{env:{name.upper()}}}' or '${{file:path}}'",
            )
