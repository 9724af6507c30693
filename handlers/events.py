"""The event log, its live stream and retention."""

from __future__ import annotations

import json
from collections import OrderedDict

from starlette.responses import StreamingResponse

from db import events as db_events
from db.events import Event
from db.pagination import page
from hub import context, eventbus, events, state, timeparse
from hub.eventbus import Overflow
from hub.problems import ServiceUnavailable, require
from hub.streaming import KEEPALIVE_SECONDS, frame

MAX_ID = 2**63 - 1


_FRAMES: OrderedDict[tuple[int, str], bytes] = OrderedDict()
_FRAMES_KEPT = 2048


def _encoded(event: dict) -> bytes:
    """The SSE frame of an event, encoded once for all the streams that send it (the bus
    hands every follower the same event). Keyed by id and trace id: one process may serve
    several databases (tests), whose ids repeat."""
    key = (event["id"], event["trace_id"])
    encoded = _FRAMES.get(key)
    if encoded is None:
        encoded = _FRAMES[key] = frame(event["id"], event)
        if len(_FRAMES) > _FRAMES_KEPT:
            _FRAMES.popitem(last=False)
    return encoded


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
    query = events.listing(
        types=events.parse_globs(type),
        source=source,
        subject=subject,
        trace_id=trace_id,
        since=timeparse.parse_timestamp(since, "since"),
        after_id=min(after_id, MAX_ID) if after_id is not None else None,
    )
    rows, next_cursor = page(query, Event.id, limit=limit, cursor=cursor, descending=True)
    return {"items": [row.to_api() for row in rows], "next_cursor": next_cursor}, 200


def push_event(body):
    """Push an event into the log."""
    event = events.push(body)
    return event.to_api(), 201, {"Location": f"/api/v1/events/{event.id}"}


def list_event_types():
    """The event types in the log, with counts."""
    return {"items": events.type_counts()}, 200


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
        bus = state.runtime().bus
        if bus is None:
            raise ServiceUnavailable(
                "This hub is not serving live events now; try again or use follow=false.",
                code="stream_unavailable",
            )
        updates = bus.follow(globs, resume, KEEPALIVE_SECONDS)
    else:
        updates = eventbus.replay(globs, resume)

    async def body():
        async for item in updates:
            if item is None:
                yield b": keep-alive\n\n"
            elif isinstance(item, Overflow):
                data = json.dumps({"type": "overflow", "last_event_id": item.last_event_id})
                yield f"event: overflow\ndata: {data}\n\n".encode()
                return
            else:
                yield _encoded(item)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
