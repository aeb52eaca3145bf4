"""API keys: create (the whole key is shown once), list, revoke, and authenticate.

A key reads ``df_<prefix>_<secret>``; the store keeps its first 12 characters (shown, to
tell keys apart) and the sha256 of the whole key, compared in constant time. A key's
last-used time is kept to the minute: it is written when a request finds it older than
that, so requests in a burst read the key and write nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from deltaflow.errors import AuthError, Code, ForbiddenError, NotFoundError, ServiceError
from deltaflow.metadata.service_records import SCOPES, ApiKeyRecord, Scope, now, stamp
from deltaflow.ops.service import Service

PREFIX_LENGTH = 12
#: a key's last-used time is rewritten when it is older than this
TOUCH_EVERY = dt.timedelta(seconds=60)
_INVALID = "the API key is missing, wrong, revoked or expired"
_INVALID_HINT = "send a valid key in the X-API-Key header; an admin can create a new one"


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the root admin (``tenant_id`` None) or a tenant's key."""

    tenant_id: str | None
    scopes: tuple[Scope, ...]
    key_id: str | None = None
    requests_per_minute: int | None = None
    """The tenant's request quota (None: not limited)."""

    def allows(self, scope: Scope) -> bool:
        """Whether one of the scopes is ``scope`` or stronger (read < run < admin)."""
        rank = SCOPES.index(scope)
        return any(SCOPES.index(s) >= rank for s in self.scopes)

    def require(self, scope: Scope) -> None:
        if not self.allows(scope):
            raise ForbiddenError(
                f"this key's scopes ({', '.join(self.scopes)}) do not allow this request, "
                f"which needs '{scope}'",
                hint=f"use a key with the '{scope}' scope",
            )

    def sees(self, tenant_id: str) -> bool:
        """Whether the caller may see the tenant's objects (the root admin sees all)."""
        return self.tenant_id is None or self.tenant_id == tenant_id


ROOT = Principal(None, ("admin",))


@dataclass(frozen=True)
class NewKey:
    """A key just created: ``key`` is the only time the whole key is seen."""

    record: ApiKeyRecord
    key: str


def create_key(
    svc: Service,
    tenant_id: str,
    scopes: Sequence[str] = ("run",),
    name: str = "",
    expires_at: dt.datetime | None = None,
) -> NewKey:
    """A new key for the tenant with these scopes (``admin``, ``run``, ``read``)."""
    if svc.store.tenant(tenant_id) is None:
        raise NotFoundError(f"no tenant '{tenant_id}'", code=Code.TENANT_NOT_FOUND)
    chosen = _scopes(scopes)
    key = f"df_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(
        key_id=f"key_{uuid.uuid4().hex[:16]}",
        tenant_id=tenant_id,
        name=name,
        prefix=key[:PREFIX_LENGTH],
        key_hash=_hash(key),
        scopes=chosen,
        expires_at=stamp(expires_at) if expires_at is not None else None,
    )
    svc.store.add_key(record)
    return NewKey(record, key)


def list_keys(svc: Service, tenant_id: str) -> list[ApiKeyRecord]:
    """The tenant's keys (prefixes and hashes, never a key)."""
    if svc.store.tenant(tenant_id) is None:
        raise NotFoundError(f"no tenant '{tenant_id}'", code=Code.TENANT_NOT_FOUND)
    return svc.store.keys(tenant_id)


def revoke_key(svc: Service, tenant_id: str, key_id: str) -> None:
    """Revoke one of the tenant's keys; from now on it is refused."""
    if not svc.store.revoke_key(tenant_id, key_id):
        raise NotFoundError(
            f"tenant '{tenant_id}' has no key '{key_id}'",
            hint="list the tenant's keys for their ids",
            code=Code.KEY_NOT_FOUND,
        )


def authenticate(svc: Service, key: str | None, admin_key: str | None) -> Principal:
    """Who sends ``key``: the root admin, or the tenant whose live key it is."""
    if not key:
        raise AuthError(_INVALID, hint=_INVALID_HINT)
    if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
        return ROOT
    digest = _hash(key)
    for record in svc.store.keys_with_prefix(key[:PREFIX_LENGTH]):
        if hmac.compare_digest(record.key_hash, digest) and _live(record):
            if _stale(record.last_used_at):
                svc.store.touch_key(record.key_id)
            tenant = svc.store.tenant(record.tenant_id)
            limit = tenant.quotas.requests_per_minute if tenant is not None else None
            return Principal(record.tenant_id, tuple(record.scopes), record.key_id, limit)
    raise AuthError(_INVALID, hint=_INVALID_HINT)


def _live(record: ApiKeyRecord) -> bool:
    if record.revoked_at is not None:
        return False
    return record.expires_at is None or record.expires_at > now()


def _stale(last_used_at: str | None) -> bool:
    """Whether the key's last-used time is missing or older than ``TOUCH_EVERY``."""
    return last_used_at is None or last_used_at < stamp(dt.datetime.now(dt.UTC) - TOUCH_EVERY)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _scopes(scopes: Sequence[str]) -> list[Scope]:
    chosen: list[Scope] = []
    for scope in scopes:
        if scope not in SCOPES:
            raise ServiceError(
                f"unknown scope '{scope}'",
                hint=f"use one or more of: {', '.join(SCOPES)}",
            )
        chosen.append(scope)
    if not chosen:
        raise ServiceError("a key needs at least one scope", hint=f"use {', '.join(SCOPES)}")
    return chosen
