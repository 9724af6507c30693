"""Notifications: what needs a person's attention."""

from __future__ import annotations

import peewee

from db.base import BaseModel, iso

SEVERITIES = ("info", "warning", "error", "critical")


class Notification(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    kind = peewee.CharField(max_length=64)
    severity = peewee.CharField(max_length=16)
    title = peewee.TextField()
    message = peewee.TextField()
    subject = peewee.CharField(max_length=200, null=True)
    read_at = peewee.DateTimeField(null=True)
    dismissed_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "message": self.message,
            "subject": self.subject,
            "read": self.read_at is not None,
            "read_at": iso(self.read_at),
            "dismissed": self.dismissed_at is not None,
            "created_at": iso(self.created_at),
        }


def get(notification_id: str) -> Notification | None:
    return Notification.get_or_none(Notification.id == notification_id)


def visible(
    *, unread: bool | None = None, severity: str | None = None, kind: str | None = None
) -> peewee.Select:
    query = Notification.select().where(Notification.dismissed_at.is_null())
    if unread is not None:
        query = query.where(
            Notification.read_at.is_null() if unread else Notification.read_at.is_null(False)
        )
    if severity:
        query = query.where(Notification.severity == severity)
    if kind:
        query = query.where(Notification.kind == kind)
    return query


def unread_of(kind: str, subject: str | None) -> Notification | None:
    """An unread, undismissed notification of ``kind`` about ``subject``."""
    return (
        visible(unread=True, kind=kind)
        .where(
            Notification.subject == subject
            if subject is not None
            else Notification.subject.is_null()
        )
        .first()
    )


def unread_counts() -> dict:
    rows = (
        visible(unread=True)
        .select(Notification.severity, peewee.fn.COUNT(Notification.id))
        .group_by(Notification.severity)
        .tuples()
    )
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for severity, count in rows:
        by_severity[severity] = count
    return {"unread": sum(by_severity.values()), "by_severity": by_severity}
