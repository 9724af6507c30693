"""Triggers: when an event whose type matches a glob (and, when set, a jq filter) arrives,
run an action (``hub.services.actions``: make a task whose description is a template over
the event).

The durable event processor hands new events to :func:`plan` (outside any transaction: the
filters and templates, user programs, run there within their limits) and carries the plan out
with :func:`apply` inside its transaction, exactly once per event across every hub process.
Each fire runs in a savepoint of its own: a fire that fails (the template, the filter, no
agent to route to) rolls back alone, is recorded on the trigger (``last_error``,
``error_count``) with a ``trigger.failed`` event, and the other triggers and events go on.
A fire records ``fired_count``, ``last_fired_at`` and a ``trigger.fired`` event. The task and
both events carry the trace of the event that caused them.

**No loops.** A trigger whose action makes events it matches (a trigger on ``task.*`` that
creates tasks) would fire forever. Two guards stop that:

1. a trigger never reacts to its own doings: an event about a task it created (the event's
   ``payload.task_id``, or its subject, names a task whose ``created_by`` is
   ``trigger:<its id>``), and its own ``trigger.fired`` / ``trigger.failed`` events;
2. a trigger reacts (fires or fails) at most ``MAX_REACTIONS_PER_TRACE`` times within one
   trace (events share the trace of what caused them, so a loop through several triggers
   stays in one trace). Beyond that it does not fire; the skip is recorded on the trigger
   as its ``last_error`` (without an event, which would extend the loop) and logged.
"""

from __future__ import annotations

import collections
import logging

from db import automation
from db import tasks as db_tasks
from db.automation import Trigger
from db.base import after_commit, iso, new_id, utcnow, write_transaction
from db.events import Event
from hub.core import jqfilter, signals
from hub.core.problems import require
from hub.events import log as events
from hub.services import actions, audit
from hub.services.etags import check_if_match

log = logging.getLogger("aether.triggers")

MAX_REACTIONS_PER_TRACE = 10
OWN_TYPES = ("trigger.fired", "trigger.failed")


def _fields(body: dict) -> dict:
    """A whole trigger from a create or replace body (absent members take their defaults)."""
    if body.get("filter"):
        jqfilter.compile_filter(body["filter"], "body.filter")
    return {
        "name": body["name"],
        "event_type": body["event_type"],
        "filter": body.get("filter"),
        "action": actions.check(body["action"]),
        "enabled": body.get("enabled", True),
    }


def get(trigger_id: str) -> Trigger:
    return require(automation.get_trigger(trigger_id), "trigger", trigger_id)


def create(body: dict) -> Trigger:
    fields = _fields(body)
    now = utcnow()
    with write_transaction():
        trigger = Trigger.create(
            id=new_id("trg"), created_at=now, updated_at=now, version=1, **fields
        )
        _event("created", trigger)
        audit.created("triggers", trigger.id)
    return trigger


def replace(trigger_id: str, body: dict, *, if_match: str | None) -> Trigger:
    """Replace the definition (name, type, filter, action, enabled); the counters and the
    last error stay."""
    get(trigger_id)  # a missing trigger is a 404 before its body is judged
    fields = _fields(body)  # compiles the filter and the template: outside the transaction
    with write_transaction():
        trigger = get(trigger_id)
        check_if_match(if_match, trigger.etag)
        for name, value in fields.items():
            setattr(trigger, name, value)
        trigger.version += 1
        trigger.updated_at = utcnow()
        trigger.save()
        _event("updated", trigger)
    return trigger


def delete(trigger_id: str) -> None:
    with write_transaction():
        trigger = get(trigger_id)
        trigger.delete_instance()
        _event("deleted", trigger)


def _event(kind: str, trigger: Trigger) -> None:
    events.emit(
        f"trigger.{kind}",
        subject=trigger.id,
        payload={
            "trigger_id": trigger.id,
            "name": trigger.name,
            "event_type": trigger.event_type,
            "enabled": trigger.enabled,
        },
    )


# --- firing ------------------------------------------------------------------------------


def event_view(event) -> dict:
    """The event as the API shows it, without ``raw``: the filter's input and the
    template's ``event``."""
    return {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "trace_id": event.trace_id,
        "payload": event.payload,
        "time": iso(event.time),
    }


class _Batch:
    """What one ``consume`` call learns once and reuses: tasks' creators, reactions per
    trace (those in the log plus those made in this call, whose events are not written
    yet)."""

    def __init__(self) -> None:
        self.creators: dict[str, str | None] = {}
        self.reactions: dict[str, collections.Counter] = {}

    def maker(self, event) -> str | None:
        """The trigger that made what ``event`` is about, if a trigger did."""
        if event.type in OWN_TYPES and isinstance(event.payload, dict):
            return event.payload.get("trigger_id")
        task_id = event.payload.get("task_id") if isinstance(event.payload, dict) else None
        if not isinstance(task_id, str):
            task_id = event.subject if (event.subject or "").startswith("tsk_") else None
        if task_id is None:
            return None
        if task_id not in self.creators:
            task = db_tasks.get(task_id)
            self.creators[task_id] = task.created_by if task else None
        creator = self.creators[task_id] or ""
        return creator.removeprefix("trigger:") if creator.startswith("trigger:") else None

    def counts(self, trace_id: str) -> collections.Counter:
        if trace_id not in self.reactions:
            rows = Event.select(Event.payload).where(
                (Event.trace_id == trace_id) & Event.type.in_(OWN_TYPES)
            )
            self.reactions[trace_id] = collections.Counter(
                row.payload.get("trigger_id") for row in rows if isinstance(row.payload, dict)
            )
        return self.reactions[trace_id]


def plan(batch: list) -> list[tuple]:
    """What the enabled triggers do about each event (``db.events.Event`` rows, oldest first):
    ``("fire", trigger, event, task body)``, ``("fail", trigger, event, message)`` or
    ``("skip", trigger, event, None)``, in order. The filters and templates run here, in the
    user-program workers: call it outside any write transaction, then :func:`apply`."""
    enabled = automation.enabled_triggers()
    if not enabled or not batch:
        return []
    seen = _Batch()
    steps: list[tuple] = []
    for event in batch:
        matching = [t for t in enabled if events.matches((t.event_type,), event.type)]
        if not matching:
            continue
        view = event_view(event)
        maker = seen.maker(event)
        for trigger in matching:
            if trigger.id == maker:
                continue
            try:
                if not jqfilter.matches(trigger.filter, view):
                    continue
                failure = None
            except jqfilter.FilterError as exc:
                failure = f"the filter failed: {exc}"
            counts = seen.counts(event.trace_id)
            if counts[trigger.id] >= MAX_REACTIONS_PER_TRACE:
                steps.append(("skip", trigger, event, None))
                continue
            counts[trigger.id] += 1
            if failure is None:
                try:
                    body = actions.prepare(trigger.action, {"event": view})
                except actions.ActionFailed as exc:
                    failure = str(exc)
            if failure is None:
                steps.append(("fire", trigger, event, body))
            else:
                steps.append(("fail", trigger, event, failure))
    return steps


def apply(steps: list[tuple]) -> None:
    """Carry out what :func:`plan` decided, inside the processor's write transaction."""
    for kind, trigger, event, detail in steps:
        if kind == "skip":
            _skipped(trigger, event)
            continue
        failure = _fire(trigger, event, detail) if kind == "fire" else detail
        if failure is not None:
            _failed(trigger, event, failure)


def _fire(trigger: Trigger, event, body: dict) -> str | None:
    """Make the task ``body`` for ``event`` in a savepoint; the error text when it failed
    (everything it did rolled back)."""
    try:
        with write_transaction():
            made = actions.create(body, created_by=f"trigger:{trigger.id}", trace_id=event.trace_id)
            now = utcnow()
            Trigger.update(fired_count=Trigger.fired_count + 1, last_fired_at=now).where(
                Trigger.id == trigger.id
            ).execute()
            events.emit(
                "trigger.fired",
                subject=trigger.id,
                trace_id=event.trace_id,
                payload={"trigger_id": trigger.id, "event_id": event.id, **_made(made)},
            )
    except actions.ActionFailed as exc:
        return str(exc)
    except Exception as exc:  # a bug, or the database: the savepoint rolled back
        log.exception("a trigger failed unexpectedly", extra={"trigger": trigger.id})
        return f"the action failed unexpectedly: {type(exc).__name__}"
    after_commit(signals.tasks_ready.send)
    return None


def _made(made) -> dict:
    """What a fire made, as its event names it: ``task_id`` or ``workflow_run_id``."""
    return {"workflow_run_id" if made.id.startswith("wfr_") else "task_id": made.id}


def _record_error(trigger: Trigger, event, message: str) -> None:
    Trigger.update(
        error_count=Trigger.error_count + 1,
        last_error={"message": message, "at": iso(utcnow()), "event_id": event.id},
    ).where(Trigger.id == trigger.id).execute()


def _failed(trigger: Trigger, event, message: str) -> None:
    message = actions.clip(message)
    _record_error(trigger, event, message)
    events.emit(
        "trigger.failed",
        subject=trigger.id,
        trace_id=event.trace_id,
        payload={"trigger_id": trigger.id, "event_id": event.id, "error": message},
    )


def _skipped(trigger: Trigger, event) -> None:
    message = (
        f"not fired: it already reacted {MAX_REACTIONS_PER_TRACE} times in trace "
        f"{event.trace_id} (a loop of triggers?)"
    )
    log.warning(message, extra={"trigger": trigger.id, "event_id": event.id})
    _record_error(trigger, event, message)
