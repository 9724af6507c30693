"""The event log: every domain change is an event written in the same transaction as the
change, with a monotonic id.

``emit()`` is called by services inside their write transaction. The event is held until
that transaction is about to commit and then inserted, so a change that rolls back leaves
no event (a savepoint that rolls back drops its events too) and a committed change always
has its event. On PostgreSQL the batch insert takes a transaction-level advisory lock first:
event ids are then committed in id order, so a reader that has seen id N never later finds
a smaller id appear (the live stream and the durable consumers rely on it). Taking it last,
just before COMMIT, means the transaction holds no lock anybody else waits on afterwards.
The same transaction sends ``NOTIFY aether_events`` (delivered at commit) so every hub
process's stream wakes up; in this process, an after-commit hook wakes it directly.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from db import base as db_base
from db.base import after_commit, before_commit, database, is_postgres, utcnow, write_transaction
from db.events import Event
from hub.core.problems import Unprocessable

log = logging.getLogger("aether.events")

HUB = "hub"  # the actor (and default source) of the hub's own events
CHANNEL = "aether_events"
EVENT_LOCK = 7231003  # 7231001 migrations, 7231002 audit chain
# The payload of this process's NOTIFYs: its own bus was woken after commit already.
PROCESS_TOKEN = uuid.uuid4().hex


@dataclass
class Emitted:
    """An event on its way into the log; ``id`` is set when its transaction writes it."""

    type: str
    source: str
    subject: str | None
    trace_id: str
    payload: dict
    raw: str | None
    time: object
    actor: str = HUB
    id: int | None = field(default=None)

    def to_api(self) -> dict:
        return Event.to_api(self)  # the same fields as a stored event


class _Batch(threading.local):
    def __init__(self) -> None:
        self.events: list[Emitted] = []
        self.written: list[Callable[[], None]] = []


_batch = _Batch()
_committed_listeners: list[Callable[[], None]] = []


def new_trace_id() -> str:
    return uuid.uuid4().hex


# The namespaces (``<namespace>.<what>``) of the events the hub writes itself: reserved, so no
# client can push an event that passes for one of them. ``emit`` logs an error for a hub event
# outside them, and tests/events/test_events.py checks every type the code emits.
HUB_NAMESPACES = frozenset(
    {
        "agent",
        "api_key",
        "approval",
        "audit",
        "config",
        "dead_letter",
        "delivery",
        "event_mapping",
        "instance",
        "integration",
        "plugin",
        "mcp_server",
        "tool_group",
        "memory",
        "message",
        "notification",
        "project",
        "provider",
        "runtime",
        "schedule",
        "session",
        "skill",
        "subscription",
        "task",
        "tool",
        "trigger",
        "turn",
        "usage",
        "webhook",
        "workflow",
    }
)


def namespace(event_type: str) -> str:
    return event_type.split(".", 1)[0].lower()


def _unreserved(event_type: str) -> None:
    log.error("the hub emits %r outside HUB_NAMESPACES: add its namespace there", event_type)


def emit(
    type: str,
    *,
    source: str = HUB,
    subject: str | None = None,
    payload: dict | None = None,
    trace_id: str | None = None,
    raw: str | None = None,
    actor: str = HUB,
) -> Emitted:
    """Record an event as part of the current write transaction (or of its own one when
    called outside any). The returned object gets its ``id`` when the transaction writes
    the batch, just before it commits. ``actor`` is who wrote it: ``hub``, or the API key
    of a pushed event."""
    if actor == HUB and source == HUB and namespace(type) not in HUB_NAMESPACES:
        _unreserved(type)
    event = Emitted(
        type=type,
        source=source,
        subject=subject,
        trace_id=trace_id or new_trace_id(),
        payload=payload if payload is not None else {},
        raw=raw,
        time=utcnow(),
        actor=actor,
    )
    if database.in_transaction():
        before_commit(lambda: _batch.events.append(event))
    else:
        with write_transaction():
            before_commit(lambda: _batch.events.append(event))
    return event


def when_written(callback: Callable[[], None]) -> None:
    """Run ``callback`` in the current write transaction once its events have their ids
    (for rows that must point at an event, such as a webhook receipt)."""
    before_commit(lambda: _batch.written.append(callback))


def _write_batch() -> None:
    """The finalizer of every outermost write transaction: insert the batch, in order, then
    run the ``when_written`` callbacks."""
    if not _batch.events:
        callbacks, _batch.written = _batch.written, []
        for callback in callbacks:
            callback()
        return
    events, _batch.events = _batch.events, []
    try:
        _insert(events)
    except BaseException:
        _batch.written = []
        raise
    callbacks, _batch.written = _batch.written, []
    for callback in callbacks:
        callback()


def _insert(events: list[Emitted]) -> None:
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (EVENT_LOCK,))
    for event in events:
        event.id = Event.insert(
            type=event.type,
            source=event.source,
            subject=event.subject,
            trace_id=event.trace_id,
            payload=event.payload,
            raw=event.raw,
            time=event.time,
            actor=event.actor,
        ).execute()
    if is_postgres():
        database.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, PROCESS_TOKEN))
    after_commit(_committed)


def _committed() -> None:
    for listener in list(_committed_listeners):
        listener()


def on_committed(listener: Callable[[], None]) -> None:
    """Call ``listener`` (from the committing thread) after each transaction that wrote
    events. The runtime's bus uses it to wake this process's streams without a round trip."""
    if listener not in _committed_listeners:
        _committed_listeners.append(listener)


def off_committed(listener: Callable[[], None]) -> None:
    if listener in _committed_listeners:
        _committed_listeners.remove(listener)


db_base.add_finalizer(_write_batch)


# --- type globs --------------------------------------------------------------------------


def parse_globs(text: str | None) -> tuple[str, ...]:
    """``"task.*, approval.*"`` → ``("task.*", "approval.*")``; empty means everything."""
    if not text:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def matches(globs: Iterable[str], type: str) -> bool:
    """Whether an event type matches any of the globs (no globs: everything matches)."""
    globs = tuple(globs)
    return not globs or any(fnmatch.fnmatchcase(type, glob) for glob in globs)


def push(body: dict, actor: str, on_written: Callable[[Emitted], None] | None = None) -> Emitted:
    """``POST /api/v1/events``: an event from outside, recorded with the key that pushed it.
    The hub's own namespaces and the source ``hub`` are reserved (422 naming the field): a
    pushed event can never pass for one the hub wrote. ``on_written``: called in the same
    transaction once the event has its id (the audit entry names it)."""
    source = body.get("source") or "api"
    if source.lower() == HUB:
        raise Unprocessable(
            "The source `hub` is reserved for the hub's own events.",
            code="reserved_source",
            errors=[{"field": "body.source", "message": "reserved for the hub"}],
        )
    if namespace(body["type"]) in HUB_NAMESPACES:
        raise Unprocessable(
            f"Event types in `{namespace(body['type'])}.*` are the hub's own; push events of "
            "your own types (issue.created, deploy.finished …).",
            code="reserved_event_type",
            errors=[{"field": "body.type", "message": "a namespace reserved for the hub"}],
        )
    with write_transaction():
        event = emit(
            body["type"],
            source=source,
            subject=body.get("subject"),
            payload=body.get("payload") or {},
            trace_id=body.get("trace_id"),
            actor=actor,
        )
        if on_written is not None:
            when_written(lambda: on_written(event))
    return event
