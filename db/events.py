"""The event log (a monotonic id per event) and the durable cursors of its consumers."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, iso


class Event(BaseModel):
    id = peewee.BigAutoField()
    type = peewee.CharField(max_length=120, index=True)
    source = peewee.CharField(max_length=120, index=True)
    subject = peewee.CharField(max_length=200, null=True, index=True)
    trace_id = peewee.CharField(max_length=64, index=True)
    payload = JSONField()
    raw = peewee.TextField(null=True)
    time = peewee.DateTimeField(index=True)

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "trace_id": self.trace_id,
            "payload": self.payload,
            "raw": self.raw,
            "time": iso(self.time),
        }


class EventCursor(BaseModel):
    """How far a durable consumer (triggers and subscriptions) has processed the log."""

    name = peewee.CharField(primary_key=True, max_length=40)
    position = peewee.BigIntegerField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "event_cursor"


def get(event_id: int) -> Event | None:
    return Event.get_or_none(Event.id == event_id)
