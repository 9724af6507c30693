"""The hash-chained log of every mutating request."""

from __future__ import annotations

from db import audit
from db.audit import AuditEntry
from db.pagination import list_page
from hub.core.timeparse import parse_timestamp
from hub.services import audit as service


def list_audit_log(limit=50, cursor=None, actor=None, action=None, resource=None, since=None):
    """The audit log, newest first."""
    query = audit.listing(
        actor=actor, action=action, resource=resource, since=parse_timestamp(since, "since")
    )
    return list_page(query, AuditEntry.seq, limit=limit, cursor=cursor, descending=True), 200


def verify_audit_log():
    """Walk the hash chain and report the first broken link."""
    return service.verify(), 200
