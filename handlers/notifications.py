"""What needs a person's attention."""

from __future__ import annotations

from db import notifications as db_notifications
from db.notifications import Notification
from db.pagination import list_page
from hub.services import notifications


def list_notifications(limit=50, cursor=None, unread=None, severity=None, kind=None):
    """Notifications not dismissed, newest first."""
    query = db_notifications.visible(unread=unread, severity=severity, kind=kind)
    return list_page(query, Notification.id, limit=limit, cursor=cursor, descending=True), 200


def count_unread_notifications():
    """How many notifications are unread, in all and per severity."""
    return db_notifications.unread_counts(), 200


def dismiss_all_notifications():
    """Dismiss every notification."""
    return {"dismissed": notifications.dismiss_all()}, 200


def ack_notification(notification_id):
    """Mark a notification read."""
    return notifications.ack(notification_id).to_api(), 200


def dismiss_notification(notification_id):
    """Dismiss a notification (it leaves the list)."""
    return notifications.dismiss(notification_id).to_api(), 200
