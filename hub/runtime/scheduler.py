"""Schedules: fire due cron schedules exactly once across every hub process.

``tick()`` renders a due schedule's action (its template, a user program: never inside a
transaction), then claims that schedule in a write transaction of its own: on
PostgreSQL with ``SELECT … FOR UPDATE SKIP LOCKED`` (another process skips a schedule being
fired and takes the next one; once the fire commits, the schedule's ``next_run_at`` is in
the future and nobody sees it due any more); on SQLite the immediate write transaction lets
one process at a time in, and it reads again what is due. In that transaction the action
runs, its run is recorded and ``next_run_at`` moves to the first tick strictly after now,
so a tick missed during downtime runs once, not once per missed tick (see
``hub.services.schedules``). The unique index on (schedule_id, scheduled_for) is a second
guard: a tick can never have two runs.

``run_forever`` calls ``tick`` in a thread, then sleeps until the nearest ``next_run_at`` but
at most ``AETHER_SCHEDULER_POLL_SECONDS`` (a schedule created or changed by another process
is seen within that time).
"""

from __future__ import annotations

import asyncio
import logging

from db import automation
from db.automation import Schedule
from db.base import is_postgres, utcnow, write_transaction
from hub.services import schedules

log = logging.getLogger("aether.scheduler")

MIN_SLEEP = 0.05  # seconds: a schedule due but held by another process is not spun on


def tick() -> int:
    """Run every due schedule once; returns how many ran."""
    if not automation.due(utcnow()).exists():  # idle: no write lock taken to find nothing
        return 0
    ran = 0
    elsewhere: set[str] = set()  # due schedules another process holds: it fires them
    while True:
        now = utcnow()
        candidate = automation.due(now).where(Schedule.id.not_in(tuple(elsewhere))).first()
        if candidate is None:
            return ran
        prepared = schedules.prepare(candidate, now)  # the template: before the transaction
        with write_transaction():
            query = automation.due(utcnow()).where(Schedule.id == candidate.id)
            if is_postgres():
                query = query.for_update(skip_locked=True)
            schedule = query.first()
            if schedule is None:  # fired by another process meanwhile, or held by one
                elsewhere.add(candidate.id)
                continue
            if schedule.action != candidate.action:  # changed meanwhile: render it again
                continue
            if schedules.fire(schedule, now, prepared) is not None:
                ran += 1


def seconds_to_sleep(poll_seconds: float) -> float:
    """Until the nearest tick, at most ``poll_seconds``."""
    nearest = automation.nearest_run_at()
    if nearest is None:
        return poll_seconds
    return min(max((nearest - utcnow()).total_seconds(), MIN_SLEEP), poll_seconds)


async def run_forever(runtime) -> None:
    while True:
        poll = runtime.settings.scheduler_poll_seconds
        try:
            await asyncio.to_thread(tick)
            wait = await asyncio.to_thread(seconds_to_sleep, poll)
        except Exception:
            log.exception("the scheduler's tick failed")
            wait = poll
        await asyncio.sleep(wait)
