"""Appending to and verifying the keyed hash chain of the audit log (see ``db.audit``).

What the chain proves: an entry edited, inserted or removed anywhere before the newest one
fails ``verify`` unless whoever did it holds ``AETHER_SECRET_KEY`` (the chain is HMAC-keyed).
What it does not: removing the newest entries leaves a valid, shorter chain. So ``verify``
answers the head (id and hash) and ``aether_audit_head`` publishes it: a head recorded
elsewhere (a monitoring system, a ticket) anchors the chain up to it."""

from __future__ import annotations

from db import audit
from db.audit import GENESIS, KEYED, AuditEntry
from db.base import database, is_postgres, utcnow, write_transaction
from hub.core import crypto, metrics

_PG_AUDIT_LOCK = 7231002


def record(
    *,
    actor_key_id: str | None,
    actor_name: str | None,
    operator: str | None,
    operation_id: str | None,
    method: str,
    resource: str,
    status: int,
    request_id: str,
) -> AuditEntry:
    """Append one entry; appends are serialised so the chain has exactly one head."""
    with write_transaction():
        if is_postgres():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_AUDIT_LOCK,))
        last = audit.last_entry()
        entry = AuditEntry(
            at=utcnow(),
            actor_key_id=actor_key_id,
            actor_name=actor_name,
            operator=operator,
            operation_id=operation_id,
            method=method,
            resource=resource,
            status=status,
            request_id=request_id,
            prev_hash=last.hash if last else GENESIS,
            chain=KEYED,
        )
        entry.hash = entry.compute_hash(crypto.audit_key())
        entry.save(force_insert=True)
    metrics.publish_audit_head(entry.seq, entry.hash)
    return entry


def verify() -> dict:
    """Walk the chain from the start; report the first broken link, if any."""
    key = crypto.audit_key()
    expected_prev = GENESIS
    previous_seq = 0
    checked = 0
    for entry in audit.in_order():
        problem = None
        if entry.prev_hash != expected_prev:
            problem = "prev_hash does not match the previous entry (an entry was removed)"
        elif entry.chain != KEYED:
            problem = (
                "the entry is not keyed: written before the chain was keyed, where the old "
                "unkeyed chain was already broken (or downgraded since)"
            )
        elif entry.compute_hash(key) != entry.hash:
            problem = (
                "hash does not match the entry's content (the entry was edited, or "
                "AETHER_SECRET_KEY is not the one that wrote it)"
            )
        if problem:
            return {
                "valid": False,
                "checked": checked,
                "first_broken_id": entry.seq,
                "after_id": previous_seq or None,
                "reason": problem,
                "head_id": None,
                "head_hash": None,
            }
        checked += 1
        expected_prev = entry.hash
        previous_seq = entry.seq
    if previous_seq:
        metrics.publish_audit_head(previous_seq, expected_prev)
    return {
        "valid": True,
        "checked": checked,
        "first_broken_id": None,
        "after_id": None,
        "reason": None,
        "head_id": previous_seq or None,
        "head_hash": expected_prev if previous_seq else None,
    }


def rekey_legacy() -> int:
    """Entries written before the chain was keyed (``chain == 1``) are re-chained with the
    key, once, before the hub serves: the unkeyed chain is walked, and only its valid prefix
    is re-chained (a break found there stays visible to ``verify``). Returns how many were.
    (Every hub process of a deployment must run this version: an older one would append
    unkeyed entries, which ``verify`` reports.)"""
    if not AuditEntry.select().where(AuditEntry.chain != KEYED).exists():
        return 0
    key = crypto.audit_key()
    with write_transaction():
        if is_postgres():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_AUDIT_LOCK,))
        old_prev, new_prev, rekeyed = GENESIS, GENESIS, 0
        for entry in audit.in_order():
            if entry.chain == KEYED:
                break  # re-keyed already (by another process), up to here
            if entry.prev_hash != old_prev or entry.compute_hash(None) != entry.hash:
                break  # the unkeyed chain is broken here: leave it for verify to report
            old_prev = entry.hash
            entry.prev_hash, entry.chain = new_prev, KEYED
            entry.hash = new_prev = entry.compute_hash(key)
            AuditEntry.update(prev_hash=entry.prev_hash, hash=entry.hash, chain=KEYED).where(
                AuditEntry.seq == entry.seq
            ).execute()
            rekeyed += 1
    return rekeyed
