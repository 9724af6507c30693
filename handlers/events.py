"""The event log, its live stream and retention."""

from __future__ import annotations

from db import events as db_events
from db.events import Event
from db.pagination import list_page
from hub.core import timeparse
from hub.core.problems import ServiceUnavailable, require
from hub.events import bus as eventbus
from hub.events import log as events
from hub.http import context
from hub.http.sse import KEEPALIVE_SECONDS, log_stream
from hub.runtime import instance
from hub.services import audit

MAX_ID = 2**63 - 1


def list_events(
    limit=50,
    cursor=None,
    type=None,
    source=None,
    subject=None,
    trace_id=None,
    since=None,
    after_id=None,
):
    """The event log, newest first."""
    query = db_events.listing(
        types=events.parse_globs(type),
        source=source,
        subject=subject,
        trace_id=trace_id,
        since=timeparse.parse_timestamp(since, "since"),
        after_id=min(after_id, MAX_ID) if after_id is not None else None,
    )
    return list_page(query, Event.id, limit=limit, cursor=cursor, descending=True), 200


def push_event(body):
    """Push an event into the log."""
    event = events.push(
        body,
        actor=context.actor_id() or "anonymous",
        on_written=lambda event: audit.created("events", str(event.id)),
    )
    return event.to_api(), 201, {"Location": f"/api/v1/events/{event.id}"}


def list_event_types():
    """The event types in the log, with counts."""
    return {"items": db_events.type_counts()}, 200


def get_event(event_id):
    """One event."""
    return require(db_events.get(min(event_id, MAX_ID)), "event", str(event_id)).to_api(), 200


async def stream_events(types=None, last_event_id=None, follow=True):
    """Follow new events live (server-sent events)."""
    header = context.header("Last-Event-ID")
    resume = int(header) if header else last_event_id
    if resume is not None:
        resume = min(resume, MAX_ID)
    globs = events.parse_globs(types)
    if follow:
        bus = instance.current().bus
        if bus is None:
            raise ServiceUnavailable(
                "This hub is not serving live events now; try again or use follow=false.",
                code="stream_unavailable",
            )
        updates = bus.follow(globs, resume, KEEPALIVE_SECONDS, key_id=context.actor_id())
    else:
        updates = eventbus.replay(globs, resume)

    return log_stream(updates)
