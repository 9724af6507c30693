"""The audit log: one row per mutating request, hash-chained.

Each entry's ``hash`` covers its fields and the previous entry's hash. ``chain`` says how:
1 (entries written before the chain was keyed) SHA-256; 2 HMAC-SHA256 under a key derived
from ``AETHER_SECRET_KEY`` (``hub.core.crypto.audit_key``). Since every keyed entry covers the
hash before it, the unkeyed entries before the first keyed one are protected too."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import peewee

from db.base import BaseModel, iso

GENESIS = "0" * 64
UNKEYED, KEYED = 1, 2  # AuditEntry.chain


class AuditEntry(BaseModel):
    seq = peewee.BigAutoField()
    at = peewee.DateTimeField()
    actor_key_id = peewee.CharField(max_length=40, null=True)
    actor_name = peewee.CharField(max_length=200, null=True)
    operator = peewee.CharField(max_length=200, null=True)
    operation_id = peewee.CharField(max_length=100, null=True)
    method = peewee.CharField(max_length=10)
    resource = peewee.TextField()
    status = peewee.IntegerField()
    request_id = peewee.CharField(max_length=128)
    prev_hash = peewee.CharField(max_length=64)
    hash = peewee.CharField(max_length=64)
    chain = peewee.SmallIntegerField(default=UNKEYED)

    class Meta:
        table_name = "audit_log"

    def chained_fields(self) -> dict:
        return {
            "at": iso(self.at),
            "actor_key_id": self.actor_key_id,
            "actor_name": self.actor_name,
            "operator": self.operator,
            "operation_id": self.operation_id,
            "method": self.method,
            "resource": self.resource,
            "status": self.status,
            "request_id": self.request_id,
        }

    def compute_hash(self, key: bytes | None) -> str:
        """The entry's hash: keyed (HMAC) for ``chain == KEYED``, with ``key``."""
        return chain_hash(
            self.prev_hash, self.chained_fields(), key if self.chain == KEYED else None
        )

    def to_api(self) -> dict:
        return {"id": self.seq, **self.chained_fields(), "hash": self.hash}


def chain_hash(prev_hash: str, fields: dict, key: bytes | None = None) -> str:
    canonical = (prev_hash + json.dumps(fields, sort_keys=True, separators=(",", ":"))).encode()
    if key is None:
        return hashlib.sha256(canonical).hexdigest()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def last_entry() -> AuditEntry | None:
    return AuditEntry.select().order_by(AuditEntry.seq.desc()).first()


def listing(
    *,
    actor: str | None = None,
    action: str | None = None,
    resource: str | None = None,
    since: dt.datetime | None = None,
) -> peewee.Select:
    query = AuditEntry.select()
    if actor:
        query = query.where(AuditEntry.actor_key_id == actor)
    if action:
        query = query.where(AuditEntry.operation_id == action)
    if resource:
        query = query.where(AuditEntry.resource.startswith(resource))
    if since:
        query = query.where(AuditEntry.at >= since)
    return query


def in_order(batch: int = 1000):
    """Every entry, oldest first, fetched in batches."""
    last = 0
    while True:
        rows = list(
            AuditEntry.select()
            .where(AuditEntry.seq > last)
            .order_by(AuditEntry.seq.asc())
            .limit(batch)
        )
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1].seq
