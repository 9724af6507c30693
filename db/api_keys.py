"""API keys: only a SHA-256 hash of each secret is stored."""

from __future__ import annotations

import peewee

from db.base import BaseModel, Prepared, iso


class ApiKey(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    name = peewee.CharField(max_length=200)
    role = peewee.CharField(max_length=16)
    prefix = peewee.CharField(max_length=16)
    secret_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField()
    created_by = peewee.CharField(max_length=40, null=True)
    last_used_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "prefix": self.prefix,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
        }


_active_by_hash = Prepared(
    ApiKey,
    lambda secret_hash: ApiKey.select().where(
        (ApiKey.secret_hash == secret_hash) & ApiKey.revoked_at.is_null()
    ),
)


def active_by_hash(secret_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash (runs on every authenticated request)."""
    return _active_by_hash.first(secret_hash)


def get(key_id: str) -> ApiKey | None:
    return ApiKey.get_or_none(ApiKey.id == key_id)


def listing(*, include_revoked: bool = False) -> peewee.Select:
    query = ApiKey.select()
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_null())
    return query


def mark_used(key_id: str, now, *, unless_since) -> None:
    """Record use, at most once per interval (one UPDATE, skipped while recent)."""
    ApiKey.update(last_used_at=now).where(
        (ApiKey.id == key_id)
        & (ApiKey.last_used_at.is_null() | (ApiKey.last_used_at < unless_since))
    ).execute()


def revoked_among(key_ids: set[str]) -> set[str]:
    """Those of ``key_ids`` that are revoked or gone (``admin-token`` is not a stored key)."""
    stored = {k for k in key_ids if k != "admin-token"}
    if not stored:
        return set()
    active = ApiKey.select(ApiKey.id).where(
        ApiKey.id.in_(sorted(stored)) & ApiKey.revoked_at.is_null()
    )
    return stored - {row.id for row in active}
