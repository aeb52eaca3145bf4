"""``/tenants``: onboard a tenant, show it, and manage its API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from deltaflow.errors import Code, ForbiddenError, NotFoundError
from deltaflow.metadata.service_records import Quotas
from deltaflow.ops import keys, tenants
from deltaflow.ops.keys import Principal
from deltaflow.server import render
from deltaflow.server.auth import needs_admin, needs_read, state
from deltaflow.server.handlers import errors
from deltaflow.server.models import KeyIn, KeyOut, NewKeyOut, OnboardOut, TenantIn, TenantOut

router = APIRouter(prefix="/tenants", tags=["tenants"])
Admin = Annotated[Principal, Depends(needs_admin)]
Reader = Annotated[Principal, Depends(needs_read)]


def _visible(principal: Principal, tenant_id: str) -> None:
    if not principal.sees(tenant_id):
        raise NotFoundError(f"no tenant '{tenant_id}'", code=Code.TENANT_NOT_FOUND)


@router.post("", status_code=201, response_model=OnboardOut, responses=errors(422))
def onboard(body: TenantIn, request: Request, principal: Admin) -> OnboardOut:
    """Onboard a tenant (root admin key): its record, its first key (shown once) and its
    schema in its warehouse. Onboarding again returns the tenant and makes no new key
    unless ``new_key``."""
    if principal.tenant_id is not None:
        raise ForbiddenError(
            "only the root admin key onboards tenants",
            hint="send the service's admin key (DELTAFLOW_ADMIN_KEY)",
        )
    quotas = Quotas(**body.quotas.model_dump()) if body.quotas else None
    done = tenants.onboard_tenant(
        state(request).service,
        body.tenant_id,
        name=body.name,
        warehouse=body.warehouse,
        meta_schema=body.meta_schema,
        quotas=quotas,
        new_key=body.new_key,
    )
    return OnboardOut(
        tenant=render.tenant(done.tenant),
        created=done.created,
        api_key=done.key.key if done.key else None,
        key=render.key(done.key.record) if done.key else None,
    )


@router.get("/{tenant_id}", response_model=TenantOut, responses=errors(404))
def show(tenant_id: str, request: Request, principal: Reader) -> TenantOut:
    """A tenant (root admin, or a key of that tenant)."""
    _visible(principal, tenant_id)
    return render.tenant(tenants.get_tenant(state(request).service, tenant_id))


@router.post(
    "/{tenant_id}/keys", status_code=201, response_model=NewKeyOut, responses=errors(404, 422)
)
def create_key(tenant_id: str, body: KeyIn, request: Request, principal: Admin) -> NewKeyOut:
    """A new key for the tenant; the whole key is in this answer only."""
    _visible(principal, tenant_id)
    made = keys.create_key(
        state(request).service, tenant_id, body.scopes, body.name, body.expires_at
    )
    return NewKeyOut(key=render.key(made.record), api_key=made.key)


@router.get("/{tenant_id}/keys", response_model=list[KeyOut], responses=errors(404))
def list_keys(tenant_id: str, request: Request, principal: Admin) -> list[KeyOut]:
    """The tenant's keys: prefixes, scopes and times, never a key."""
    _visible(principal, tenant_id)
    return [render.key(k) for k in keys.list_keys(state(request).service, tenant_id)]


@router.delete("/{tenant_id}/keys/{key_id}", status_code=204, responses=errors(404))
def revoke_key(tenant_id: str, key_id: str, request: Request, principal: Admin) -> None:
    """Revoke a key: from now on it is answered 401."""
    _visible(principal, tenant_id)
    keys.revoke_key(state(request).service, tenant_id, key_id)
