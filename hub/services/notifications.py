"""Notifications: created by the hub when something needs a person, and by the ``notify``
tool; read (ack) and dismissed by people."""

from __future__ import annotations

from db import notifications
from db.base import new_id, utcnow, write_transaction
from db.notifications import Notification
from hub.problems import require


def create(
    *, kind: str, severity: str, title: str, message: str = "", subject: str | None = None
) -> Notification:
    """Add a notification (joins the caller's transaction when there is one)."""
    with write_transaction():
        return Notification.create(
            id=new_id("ntf"),
            kind=kind,
            severity=severity,
            title=title[:500],
            message=message,
            subject=subject,
            created_at=utcnow(),
        )


def ack(notification_id: str) -> Notification:
    with write_transaction():
        note = require(notifications.get(notification_id), "notification", notification_id)
        if note.read_at is None:
            note.read_at = utcnow()
            note.save()
    return note


def dismiss(notification_id: str) -> Notification:
    with write_transaction():
        note = require(notifications.get(notification_id), "notification", notification_id)
        if note.dismissed_at is None:
            note.dismissed_at = utcnow()
            note.save()
    return note


def dismiss_all() -> int:
    with write_transaction():
        return (
            Notification.update(dismissed_at=utcnow())
            .where(Notification.dismissed_at.is_null())
            .execute()
        )
