"""Appending to and verifying the keyed hash chain of the audit log (see ``db.audit``).

What the chain proves: an entry edited, inserted or removed anywhere before the newest one
fails ``verify`` unless whoever did it holds ``AETHER_SECRET_KEY`` (the chain is HMAC-keyed).
What it does not: removing the newest entries leaves a valid, shorter chain. So ``verify``
answers the head (id and hash) and ``aether_audit_head`` publishes it: a head recorded
elsewhere (a monitoring system, a ticket) anchors the chain up to it."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import threading
from collections.abc import Iterator

from db import audit
from db.audit import GENESIS, KEYED, AuditEntry
from db.base import (
    add_finalizer,
    after_commit,
    database,
    is_postgres,
    utcnow,
    write_transaction,
)
from hub.core import crypto, metrics

log = logging.getLogger("aether.audit")

_PG_AUDIT_LOCK = 7231002
API = "/api/v1"


@dataclasses.dataclass
class Pending:
    """The audit entry of one mutating request while it runs.

    The first write transaction that commits while the request runs writes the entry inside
    itself, so the change and its entry commit together (a crash between them cannot lose
    the entry): with the operation's success status, and for a create the new resource's
    path (``created``). A request that changes nothing (refused, failed, replayed) has its
    entry written after the response, with the status it answered (``finish``)."""

    actor_key_id: str | None
    actor_name: str | None
    operator: str | None
    operation_id: str | None
    method: str
    path: str  # the request's
    status: int
    request_id: str
    names_created: bool = False  # the operation answers a Location (a create)
    resource: str = ""  # what the entry names: the path, or what a create made
    open: bool = True  # the request is still running
    written: AuditEntry | None = None  # by a write transaction (committed or not)
    committed: bool = False  # ... and that transaction committed
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.resource = self.resource or self.path

    def fields(self) -> dict:
        return {
            "actor_key_id": self.actor_key_id,
            "actor_name": self.actor_name,
            "operator": self.operator,
            "operation_id": self.operation_id,
            "method": self.method,
            "resource": self.resource[:2000],
            "status": self.status,
            "request_id": self.request_id,
        }


_pending: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "aether_audit_pending", default=None
)


def begin(pending: Pending) -> contextvars.Token:
    """Make ``pending`` the entry of the request running in this context (and the threads
    and tasks it starts, which copy the context)."""
    return _pending.set(pending)


def end(token: contextvars.Token) -> Pending | None:
    """In the context ``begin`` ran in: the request has answered; later transactions (of
    tasks it started) no longer write its entry. Returns the entry for ``finish``."""
    pending = _pending.get()
    close()
    _pending.reset(token)
    return pending


def finish(pending: Pending, status: int, resource: str | None = None) -> None:
    """Write the request's entry, answered ``status``, unless a write transaction committed
    it already. ``resource``: what the answer named (a replayed create's ``Location``);
    otherwise the entry names the request's path."""
    with pending.lock:
        committed = pending.committed
    if committed:
        if status != pending.status:  # e.g. a turn that failed after its message was stored
            log.info(
                "the audit entry records the committed change, not the later failure",
                extra={
                    "operation": pending.operation_id,
                    "recorded": pending.status,
                    "answered": status,
                    "request_id": pending.request_id,
                },
            )
        return
    pending.status, pending.resource = status, resource or pending.path
    record(**pending.fields())


def close() -> None:
    """No later write transaction of the running request writes its entry (what it writes
    now is bookkeeping, not the change: ``finish`` writes the entry if nothing did)."""
    pending = _pending.get()
    if pending is not None:
        with pending.lock:
            pending.open = False


def created(
    collection: str, resource_id: str, *, status: int = 201, requested_at: str | None = None
) -> None:
    """Inside a service's write transaction: this creates ``/api/v1/<collection>/<id>``,
    which the running request's entry names if the request is a create (its operation
    answers a ``Location``) addressed to that collection (``POST /agents``,
    ``POST /agents/{id}/clone``, ``PUT /providers/{id}``; not the task ``POST /tasks``'s
    agent loop or ``POST /schedules/{id}/run`` makes). ``requested_at`` is another
    collection the create is addressed to (``POST /workflows/{id}/runs`` makes a
    ``/workflow-runs/…``)."""
    pending = _pending.get()
    base = f"{API}/{collection}"
    if pending is None or not pending.names_created:
        return
    addressed = [base, f"{API}/{requested_at}"] if requested_at else [base]
    if not any(pending.path == b or pending.path.startswith(b + "/") for b in addressed):
        return
    with pending.lock:
        if pending.open and pending.written is None:
            pending.resource = f"{base}/{resource_id}"
            pending.status = status


@contextlib.contextmanager
def aside() -> Iterator[None]:
    """Write transactions in this block are not the running request's change (bookkeeping,
    such as a user program's failure recorded on its mapping): they do not write its entry."""
    token = _pending.set(None)
    try:
        yield
    finally:
        _pending.reset(token)


def answers(status: int) -> None:
    """Inside a service's write transaction: the request will answer ``status`` (for
    operations that declare more than one 2xx)."""
    pending = _pending.get()
    if pending is not None and pending.open and pending.written is None:
        pending.status = status


def _in_transaction() -> None:
    """A finalizer of every outermost write transaction: the running request's entry."""
    pending = _pending.get()
    if pending is None:
        return
    with pending.lock:
        if not pending.open or pending.written is not None:
            return
        pending.written = entry = _append(pending.fields())

    def committed() -> None:
        pending.committed = True
        metrics.publish_audit_head(entry.seq, entry.hash)
        metrics.AUDIT_ENTRIES.inc()

    after_commit(committed)


add_finalizer(_in_transaction, last=True)


def _append(fields: dict) -> AuditEntry:
    """Inside a write transaction: append one entry to the chain. Appends are serialised
    (the SQLite write lock; an advisory lock on PostgreSQL) so the chain has one head."""
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_AUDIT_LOCK,))
    last = audit.last_entry()
    entry = AuditEntry(at=utcnow(), **fields, prev_hash=last.hash if last else GENESIS, chain=KEYED)
    entry.hash = entry.compute_hash(crypto.audit_key())
    entry.save(force_insert=True)
    return entry


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
    """Append one entry in its own transaction (for what changed nothing, or happened
    outside a request)."""
    with write_transaction():
        entry = _append(
            {
                "actor_key_id": actor_key_id,
                "actor_name": actor_name,
                "operator": operator,
                "operation_id": operation_id,
                "method": method,
                "resource": resource[:2000],
                "status": status,
                "request_id": request_id,
            }
        )
    metrics.publish_audit_head(entry.seq, entry.hash)
    metrics.AUDIT_ENTRIES.inc()
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
