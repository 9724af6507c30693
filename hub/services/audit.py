"""Appending to and verifying the hash-chained audit log."""

from __future__ import annotations

from db import audit
from db.audit import GENESIS, AuditEntry
from db.base import database, is_postgres, utcnow, write_transaction

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
        )
        entry.hash = entry.compute_hash()
        entry.save(force_insert=True)
    return entry


def verify() -> dict:
    """Walk the chain from the start; report the first broken link, if any."""
    expected_prev = GENESIS
    previous_seq = 0
    checked = 0
    for entry in audit.in_order():
        problem = None
        if entry.prev_hash != expected_prev:
            problem = "prev_hash does not match the previous entry (an entry was removed)"
        elif entry.compute_hash() != entry.hash:
            problem = "hash does not match the entry's content (the entry was edited)"
        if problem:
            return {
                "valid": False,
                "checked": checked,
                "first_broken_id": entry.seq,
                "after_id": previous_seq or None,
                "reason": problem,
            }
        checked += 1
        expected_prev = entry.hash
        previous_seq = entry.seq
    return {
        "valid": True,
        "checked": checked,
        "first_broken_id": None,
        "after_id": None,
        "reason": None,
    }
