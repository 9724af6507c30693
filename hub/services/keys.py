"""Creating and revoking API keys."""

from __future__ import annotations

from db import api_keys
from db.api_keys import ApiKey
from db.base import after_commit, new_id, utcnow, write_transaction
from hub.core import access
from hub.core.problems import Conflict, NotFound
from hub.services import audit
from hub.services.auth import generate_secret, hash_secret


def create(name: str, role: str, created_by: str | None = None) -> tuple[ApiKey, str]:
    """A new key and its secret; the secret is never stored and cannot be read again."""
    secret = generate_secret()
    with write_transaction():
        key = ApiKey.create(
            id=new_id("key"),
            name=name,
            role=role,
            prefix=secret[:12],
            secret_hash=hash_secret(secret),
            created_at=utcnow(),
            created_by=created_by,
        )
        audit.created("api-keys", key.id)
    return key, secret


def revoke(key_id: str, *, admin_token_set: bool) -> ApiKey:
    """Revoke a key at once. The last active admin key stays unless an admin token exists."""
    with write_transaction():
        key = api_keys.get(key_id)
        if key is None or key.revoked_at is not None:
            raise NotFound(f"No active API key with id {key_id!r}.", code="api_key_not_found")
        if key.role == "admin" and not admin_token_set:
            admins = api_keys.listing().where(ApiKey.role == "admin").count()
            if admins <= 1:
                raise Conflict(
                    "This is the last admin key; create another admin key first.",
                    code="last_admin_key",
                )
        key.revoked_at = utcnow()
        key.save()
        after_commit(lambda: access.watch.end_keys({key_id}))  # its open streams, at once
    return key


def ensure_bootstrap_key(admin_token: str) -> str | None:
    """On a first start with no key and no admin token, make an admin key; return its secret."""
    if admin_token:
        return None
    with write_transaction():
        if api_keys.listing(include_revoked=True).count() > 0:
            return None
        secret = generate_secret()
        ApiKey.create(
            id=new_id("key"),
            name="bootstrap admin",
            role="admin",
            prefix=secret[:12],
            secret_hash=hash_secret(secret),
            created_at=utcnow(),
        )
    return secret
