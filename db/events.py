"""The event log (a monotonic id per event) and the durable cursors of its consumers."""

from __future__ import annotations

import datetime as dt
import re

import peewee

from db.base import BaseModel, JSONField, is_postgres, iso

CONSUMERS_CURSOR = "consumers"  # the durable consumers' row in event_cursor
PAGE = 500  # events read per query by the streams and the bus


class Event(BaseModel):
    id = peewee.BigAutoField()
    type = peewee.CharField(max_length=120, index=True)
    source = peewee.CharField(max_length=120, index=True)
    subject = peewee.CharField(max_length=200, null=True, index=True)
    trace_id = peewee.CharField(max_length=64, index=True)
    payload = JSONField()
    raw = peewee.TextField(null=True)
    time = peewee.DateTimeField(index=True)
    actor = peewee.CharField(max_length=64, null=True)

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "actor": self.actor,
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


def latest_id() -> int:
    return Event.select(peewee.fn.MAX(Event.id)).scalar() or 0


def read_after(after: int, limit: int = PAGE) -> list[dict]:
    rows = Event.select().where(Event.id > after).order_by(Event.id).limit(limit)
    return [row.to_api() for row in rows]


def consumers_position() -> int:
    """The last event id the durable consumers processed."""
    cursor = EventCursor.get_or_none(EventCursor.name == CONSUMERS_CURSOR)
    return cursor.position if cursor else 0


def trim(*, older_than: dt.datetime, beyond_count: int) -> int:
    """Delete events older than ``older_than`` or beyond the newest ``beyond_count``, never
    one the durable consumers have not processed yet; returns how many went."""
    limit = consumers_position()
    by_count = latest_id() - beyond_count
    doomed = Event.delete().where(
        (Event.id <= limit) & ((Event.time < older_than) | (Event.id <= by_count))
    )
    return doomed.execute()


# --- listing -----------------------------------------------------------------------------


def _glob_regex(glob: str) -> str:
    """A glob as an anchored POSIX regular expression (PostgreSQL ``~``)."""
    out, i = ["^"], 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in glob[i + 1 :]:
            close = glob.index("]", i + 1)
            body = glob[i + 1 : close]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = close
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out) + "$"


def glob_condition(globs: tuple[str, ...]):
    """The globs as one SQL condition (SQLite ``GLOB``, PostgreSQL ``~``), same semantics as
    ``matches``."""
    conditions = []
    for glob in globs:
        if is_postgres():
            conditions.append(Event.type.regexp(_glob_regex(glob)))
        else:
            conditions.append(peewee.fn.GLOB(glob.replace("[!", "[^"), Event.type) != 0)
    condition = conditions[0]
    for more in conditions[1:]:
        condition |= more
    return condition


def listing(
    *,
    types: tuple[str, ...] = (),
    source: str | None = None,
    subject: str | None = None,
    trace_id: str | None = None,
    since=None,
    after_id: int | None = None,
) -> peewee.Select:
    query = Event.select()
    if types:
        query = query.where(glob_condition(types))
    if source:
        query = query.where(Event.source == source)
    if subject:
        query = query.where(Event.subject == subject)
    if trace_id:
        query = query.where(Event.trace_id == trace_id)
    if since is not None:
        query = query.where(Event.time >= since)
    if after_id is not None:
        query = query.where(Event.id > after_id)
    return query


def type_counts() -> list[dict]:
    rows = (
        Event.select(
            Event.type,
            peewee.fn.COUNT(Event.id).alias("n"),
            peewee.fn.MAX(Event.time).alias("last"),
        )
        .group_by(Event.type)
        .order_by(peewee.fn.COUNT(Event.id).desc(), Event.type)
        .tuples()
    )
    return [{"type": t, "count": n, "last_at": iso(last)} for t, n, last in rows]
