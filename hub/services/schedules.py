"""Schedules: a cron expression in a time zone runs an action (``hub.services.actions``) at
each tick; ``hub.runtime.scheduler`` finds the due ones, this module fires them and records
each run.

``next_run_at`` (naive UTC, like every stored time) is the next tick, computed by
``croniter`` in the schedule's time zone, so ``0 9 * * *`` in ``Europe/Paris`` is 09:00 Paris
time in winter and in summer. Around daylight-saving changes:

- a wall time that does not exist (the hour skipped in spring) runs once, when the clocks
  jump (``30 2 * * *`` runs at 03:00 that day);
- a wall time that happens twice (the hour repeated in autumn) runs once, at its first
  occurrence, when the hour field is fixed (``30 2 * * *``); when the hour field starts with
  ``*`` (``*/15 * * * *``, ``0 * * * *``) the job is an interval and runs in both hours.

**Missed ticks.** A tick runs once, and the next one is the first tick strictly after the
moment the run happens, not after the tick it was for: after downtime, the ticks missed run
once, as one run whose ``scheduled_for`` is the oldest missed tick, and the schedule goes on
from now. (Disabling clears ``next_run_at``, enabling computes it from now: ticks that fell
while a schedule was disabled never run.)

Each run (cron or manual) makes a ``schedule.fired`` event (``schedule.failed`` when its
action failed: the run is ``failed`` with the error), in the transaction of the run. The
task, the run's events and nothing else share a new trace.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

import peewee
from croniter import croniter

from db import automation
from db.automation import Schedule, ScheduleRun
from db.base import after_commit, iso, new_id, utcnow, write_transaction
from hub.core import signals
from hub.core.problems import Conflict, NotFound, Unprocessable, require
from hub.events import log as events
from hub.services import actions, audit
from hub.services.etags import check_if_match

log = logging.getLogger("aether.scheduler")

DEFAULT_TIMEZONE = "UTC"
PREPARE_ATTEMPTS = 3  # renders of a manual run whose action keeps changing meanwhile
_SEARCH = 1000  # candidates croniter may offer before a schedule is said to never fire


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``, or a 422 naming ``body.timezone``."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise Unprocessable(
            f"{name!r} is not a known IANA time zone.",
            code="invalid_timezone",
            errors=[{"field": "body.timezone", "message": "unknown time zone"}],
        ) from None


def next_tick(cron: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first tick of ``cron`` in ``timezone`` strictly after ``after`` (naive UTC in,
    naive UTC out). Raises ``ValueError`` when the expression is invalid or never fires."""
    tz = zoneinfo.ZoneInfo(timezone)
    fixed_hour = not cron.split()[1].startswith("*")
    ticks = croniter(cron, after.replace(tzinfo=dt.UTC).astimezone(tz))
    for _ in range(_SEARCH):
        candidate = ticks.get_next(dt.datetime).astimezone(dt.UTC)
        if fixed_hour and candidate.astimezone(tz).fold == 1:
            continue  # the second time this wall time shows (autumn): it already ran
        candidate = candidate.replace(tzinfo=None)
        if candidate > after:
            return candidate
    raise ValueError("the expression has no tick in sight")


def _first_tick(cron: str, timezone: str, now: dt.datetime) -> dt.datetime:
    try:
        return next_tick(cron, timezone, now)
    except (ValueError, KeyError, IndexError) as exc:
        raise Unprocessable(
            f"{cron!r} is not a usable five-field cron expression: {exc}",
            code="invalid_cron",
            errors=[{"field": "body.cron", "message": str(exc) or "invalid cron expression"}],
        ) from None


def get(schedule_id: str) -> Schedule:
    return require(automation.get_schedule(schedule_id), "schedule", schedule_id)


def get_run(schedule_id: str, run_id: str) -> ScheduleRun:
    get(schedule_id)
    run = automation.get_run(schedule_id, run_id)
    if run is None:
        raise NotFound(f"Schedule {schedule_id!r} has no run {run_id!r}.", code="run_not_found")
    return run


def create(body: dict) -> Schedule:
    timezone = body.get("timezone") or DEFAULT_TIMEZONE
    zone(timezone)
    now = utcnow()
    upcoming = _first_tick(body["cron"], timezone, now)
    action = actions.check(body["action"])
    enabled = body.get("enabled", True)
    with write_transaction():
        schedule = Schedule.create(
            id=new_id("sch"),
            name=body["name"],
            cron=body["cron"],
            timezone=timezone,
            enabled=enabled,
            action=action,
            next_run_at=upcoming if enabled else None,
            version=1,
            created_at=now,
            updated_at=now,
        )
        _event("created", schedule)
        audit.created("schedules", schedule.id)
    return schedule


def update(schedule_id: str, body: dict, *, if_match: str | None) -> Schedule:
    """Change the fields given. Disabling clears ``next_run_at``; enabling, or a new cron or
    time zone, computes it afresh from now."""
    now = utcnow()
    get(schedule_id)  # a missing schedule is a 404 before its body is judged
    action = actions.check(body["action"]) if body.get("action") is not None else None
    with write_transaction():
        schedule = get(schedule_id)
        check_if_match(if_match, schedule.etag)
        was_enabled, was_timing = schedule.enabled, (schedule.cron, schedule.timezone)
        if body.get("timezone") is not None:
            zone(body["timezone"])
            schedule.timezone = body["timezone"]
        if body.get("cron") is not None:
            schedule.cron = body["cron"]
        if body.get("name") is not None:
            schedule.name = body["name"]
        if body.get("enabled") is not None:
            schedule.enabled = body["enabled"]
        if action is not None:
            schedule.action = action
        upcoming = _first_tick(schedule.cron, schedule.timezone, now)
        if not schedule.enabled:
            schedule.next_run_at = None
        elif not was_enabled or (schedule.cron, schedule.timezone) != was_timing:
            schedule.next_run_at = upcoming
        schedule.version += 1
        schedule.updated_at = now
        schedule.save()
        _event("updated", schedule)
    return schedule


def delete(schedule_id: str) -> None:
    """Delete a schedule and its runs (the tasks they made stay)."""
    with write_transaction():
        schedule = get(schedule_id)
        ScheduleRun.delete().where(ScheduleRun.schedule_id == schedule.id).execute()
        schedule.delete_instance()
        _event("deleted", schedule)


def _event(kind: str, schedule: Schedule) -> None:
    events.emit(
        f"schedule.{kind}",
        subject=schedule.id,
        payload={
            "schedule_id": schedule.id,
            "name": schedule.name,
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "enabled": schedule.enabled,
        },
    )


# --- runs --------------------------------------------------------------------------------


def run_now(schedule_id: str) -> ScheduleRun:
    """Run the action at once (a ``manual`` run); the cron timing is unchanged. The template
    renders before the write transaction; should the action change meanwhile, it renders
    again."""
    for _ in range(PREPARE_ATTEMPTS):
        seen = get(schedule_id)
        started = utcnow()
        prepared = prepare(seen, started)
        with write_transaction():
            schedule = get(schedule_id)
            if schedule.action == seen.action:
                run = _run(schedule, prepared, started, trigger="manual", scheduled_for=None)
                audit.created("schedules", f"{schedule.id}/runs/{run.id}")
                return run
    raise Conflict(
        "The schedule's action kept changing while it was being run; try again.",
        code="concurrent_change",
    )


def prepare(schedule: Schedule, started: dt.datetime) -> dict | str:
    """The body of the task the schedule's action makes for a run starting at ``started``
    (its template rendered, in the user-program workers: never inside a write
    transaction), or the reason it cannot run."""
    try:
        return actions.prepare(schedule.action, _template_context(schedule, started))
    except actions.ActionFailed as exc:
        return str(exc)


def fire(schedule: Schedule, now: dt.datetime, prepared: dict | str) -> ScheduleRun | None:
    """Run a due schedule's tick with the body ``prepare`` made, and move ``next_run_at``
    to the first tick after ``now`` (inside the scheduler's transaction, which holds the
    schedule). ``None`` when the tick had a run already (the unique index on
    (schedule_id, scheduled_for) said so)."""
    run = None
    try:
        with write_transaction():
            run = _run(schedule, prepared, now, trigger="cron", scheduled_for=schedule.next_run_at)
    except peewee.IntegrityError:
        log.warning(
            "a schedule's tick ran already",
            extra={"schedule": schedule.id, "scheduled_for": iso(schedule.next_run_at)},
        )
    try:
        upcoming = next_tick(schedule.cron, schedule.timezone, now)
    except (ValueError, KeyError, IndexError, zoneinfo.ZoneInfoNotFoundError):
        log.exception("a schedule has no next tick", extra={"schedule": schedule.id})
        upcoming = None
    Schedule.update(next_run_at=upcoming).where(Schedule.id == schedule.id).execute()
    return run


def _template_context(schedule: Schedule, now: dt.datetime) -> dict:
    local = now.replace(tzinfo=dt.UTC).astimezone(zoneinfo.ZoneInfo(schedule.timezone))
    return {
        "schedule": {
            "id": schedule.id,
            "name": schedule.name,
            "cron": schedule.cron,
            "timezone": schedule.timezone,
        },
        "now": local.isoformat(timespec="seconds"),
    }


def _run(
    schedule: Schedule,
    prepared: dict | str,
    started: dt.datetime,
    *,
    trigger: str,
    scheduled_for: dt.datetime | None,
) -> ScheduleRun:
    """Make the task ``prepare`` described (in a savepoint: a failure undoes only what it
    did), record the run and its event, stamp ``last_run_at``."""
    trace_id = events.new_trace_id()
    task_id = run_id = None
    error = prepared if isinstance(prepared, str) else None
    try:
        if error is None:
            with write_transaction():
                made = actions.create(
                    prepared, created_by=f"schedule:{schedule.id}", trace_id=trace_id
                ).id
                task_id, run_id = (None, made) if made.startswith("wfr_") else (made, None)
    except actions.ActionFailed as exc:
        error = str(exc)
    except Exception as exc:  # a bug, or the database: the savepoint rolled back
        log.exception("a schedule's action failed unexpectedly", extra={"schedule": schedule.id})
        error = f"the action failed unexpectedly: {type(exc).__name__}"
    run = ScheduleRun.create(
        id=new_id("run"),
        schedule_id=schedule.id,
        trigger=trigger,
        scheduled_for=scheduled_for,
        started_at=started,
        finished_at=utcnow(),
        status="failed" if error else "succeeded",
        task_id=task_id,
        workflow_run_id=run_id,
        error=error,
    )
    Schedule.update(last_run_at=started).where(Schedule.id == schedule.id).execute()
    payload = {
        "schedule_id": schedule.id,
        "run_id": run.id,
        "task_id": task_id,
        "workflow_run_id": run_id,
        "scheduled_for": iso(scheduled_for),
    }
    if error:
        payload["error"] = error
    events.emit(
        "schedule.failed" if error else "schedule.fired",
        subject=schedule.id,
        trace_id=trace_id,
        payload=payload,
    )
    if task_id or run_id:
        after_commit(signals.tasks_ready.send)
    return run
