"""Notifications: created by the hub when something needs a person, and by the ``notify``
tool; read (ack) and dismissed by people."""

from __future__ import annotations

from db import notifications
from db.base import database, is_postgres, new_id, utcnow, write_transaction
from db.notifications import Notification
from hub.core.problems import require


def create(
    *,
    kind: str,
    severity: str,
    title: str,
    message: str = "",
    subject: str | None = None,
    unless_unread: bool = False,
) -> Notification:
    """Add a notification (joins the caller's transaction when there is one). With
    ``unless_unread``, an unread notification of the same kind and subject stands for this
    one and is returned instead: one notice per failing thing, not one per failure."""
    with write_transaction():
        if unless_unread:
            if is_postgres():  # two transactions must not both find none and both add one
                database.execute_sql(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"notification {kind} {subject}",),
                )
            if (standing := notifications.unread_of(kind, subject)) is not None:
                return standing
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
