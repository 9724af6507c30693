"""API-key authentication and roles.

Keys are random 256-bit secrets; only their SHA-256 is stored (a slow hash buys nothing for
secrets with that much entropy, and keeps the per-request lookup to one indexed read).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from db import api_keys
from db.base import utcnow

ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
KEY_PREFIX = "aeth_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)  # last_used_at is kept to the minute


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: str

    def allows(self, required: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[required]


ADMIN_TOKEN_PRINCIPAL = Principal(key_id="admin-token", name="AETHER_ADMIN_TOKEN", role="admin")


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


# What ``credential_from_headers`` answers for a request carrying two different credentials:
# never a key (keys hold no NUL), so it authenticates nobody.
CONFLICTING = "\x00conflicting-credentials"


def credential_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    """The presented secret: ``Authorization: Bearer …`` or ``X-API-Key``; ``CONFLICTING``
    when both are sent and differ (a valid one beside an invalid one is refused, not picked:
    the caller's intent is unclear, and a proxy may have added one)."""
    bearer = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        bearer = value.strip()
    header = api_key.strip() if api_key is not None else None
    if bearer and header is not None and not hmac.compare_digest(bearer.encode(), header.encode()):
        return CONFLICTING  # an empty X-API-Key beside a bearer counts: it is sent, and differs
    return bearer or header or None


def authenticate(secret: str, admin_token: str) -> Principal | None:
    """The principal a secret stands for, or None. Revoked keys never match.

    Records ``last_used_at`` (to the minute) as a side effect; ``lookup`` is the read alone.
    """
    found = lookup(secret, admin_token)
    if found is not None and found[1]:
        record_use(found[0].key_id)
    return found[0] if found else None


def lookup(secret: str, admin_token: str) -> tuple[Principal, bool] | None:
    """(principal, whether its last use should be recorded now) — one indexed read."""
    if admin_token and hmac.compare_digest(secret.encode(), admin_token.encode()):
        return ADMIN_TOKEN_PRINCIPAL, False
    key = api_keys.active_by_hash(hash_secret(secret))
    if key is None:
        return None
    stale = key.last_used_at is None or utcnow() - key.last_used_at > LAST_USED_RESOLUTION
    return Principal(key_id=key.id, name=key.name, role=key.role), stale


def record_use(key_id: str) -> None:
    now = utcnow()
    api_keys.mark_used(key_id, now, unless_since=now - LAST_USED_RESOLUTION)
