"""The durable event processor and the retention sweeper.

**Exactly once.** ``process_batch()`` reads the consumers' position and the next events, and
lets the triggers plan their reactions (their jq filters and templates are user programs: they
run, bounded, with no transaction open). Then it takes the consumer cursor row with ``FOR
UPDATE SKIP LOCKED`` (PostgreSQL; the immediate transaction on SQLite); when the position is
still the one it read, it carries out the plan, hands the events to subscriptions and
advances the cursor in the same transaction. Each event is processed exactly once across
every hub process (a process that finds the cursor moved drops its plan), and nothing is lost
on a crash. A program that fails or runs past its limit is a ``trigger.failed`` reaction like
any other: the event is done for that trigger, so a poison event never blocks the processor,
before or after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import peewee

from db import events as db_events
from db.base import is_postgres, utcnow, write_transaction
from db.events import Event, EventCursor
from db.projects import WebhookReceipt
from hub.events.bus import Bus
from hub.services import subscriptions, triggers

log = logging.getLogger("aether.events")


def process_batch(limit: int = 200) -> int:
    """Hand the next events to triggers and subscriptions, exactly once across processes;
    returns how many were processed (0: nothing new, or another process is at it)."""
    position = db_events.consumers_position()
    if db_events.latest_id() <= position:
        return 0  # nothing new: no write lock taken to find nothing
    batch = list(Event.select().where(Event.id > position).order_by(Event.id).limit(limit))
    if not batch:
        return 0
    try:
        steps = triggers.plan(batch)  # filters and templates: user programs, no lock held
    except peewee.PeeweeException:
        raise  # the database: nothing is advanced, the batch is tried again
    except Exception:  # a bug: the triggers miss this batch, as a failed consumer would
        log.exception("planning the triggers' reactions failed")
        steps = []
    with write_transaction():
        EventCursor.insert(
            name=db_events.CONSUMERS_CURSOR, position=0, updated_at=utcnow()
        ).on_conflict_ignore().execute()
        query = EventCursor.select().where(EventCursor.name == db_events.CONSUMERS_CURSOR)
        if is_postgres():
            query = query.for_update(skip_locked=True)
        cursor = query.first()
        if cursor is None or cursor.position != position:
            return 0  # another process holds the batch, or processed it meanwhile
        for name, consume in (
            ("triggers", lambda: triggers.apply(steps)),
            ("subscriptions", lambda: subscriptions.consume(batch)),
        ):
            try:
                with write_transaction():  # a savepoint: a consumer's failure is its own
                    consume()
            except Exception:
                log.exception("an event consumer failed", extra={"consumer": name})
        EventCursor.update(position=batch[-1].id, updated_at=utcnow()).where(
            EventCursor.name == db_events.CONSUMERS_CURSOR
        ).execute()
    return len(batch)


async def process_forever(bus: Bus) -> None:
    """Run ``process_batch`` whenever events arrive (and at the poll interval)."""
    wake = asyncio.Event()
    bus.on_wake.append(wake.set)
    try:
        while True:
            try:
                while await asyncio.to_thread(process_batch):
                    pass
            except peewee.PeeweeException:
                log.warning("processing events failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bus.settings.event_poll_seconds):
                    await wake.wait()
            wake.clear()
    finally:
        bus.on_wake.remove(wake.set)


# --- retention ---------------------------------------------------------------------------


def sweep(settings) -> int:
    """Trim events older than the retention age or beyond the retention count, never one the
    durable consumers have not processed yet; receipts of old webhook deliveries go too."""
    keep_after = utcnow() - dt.timedelta(days=settings.event_retention_days)
    with write_transaction():
        removed = db_events.trim(older_than=keep_after, beyond_count=settings.event_retention_count)
        WebhookReceipt.delete().where(WebhookReceipt.created_at < keep_after).execute()
    return removed
