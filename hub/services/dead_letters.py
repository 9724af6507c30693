"""Dead letters: retry (the work runs again) or discard (given up); each only while open.

A dead task is queued again with fresh attempts; a dead delivery is pending again with fresh
attempts, due now (discarding leaves it ``failed``)."""

from __future__ import annotations

from db import dead_letters
from db.base import utcnow, write_transaction
from db.dead_letters import DeadLetter
from hub.core import signals
from hub.core.problems import Conflict, require
from hub.services import subscriptions, tasks


def _open(dead_letter_id: str) -> DeadLetter:
    letter = require(dead_letters.get(dead_letter_id), "dead_letter", dead_letter_id)
    if letter.status != "open":
        raise Conflict(f"Dead letter {dead_letter_id!r} is {letter.status}.", code="not_open")
    return letter


def retry(dead_letter_id: str) -> DeadLetter:
    with write_transaction():
        letter = _open(dead_letter_id)
        if letter.kind == "task":
            tasks.requeue_dead(letter.subject_id)
        elif letter.kind == "delivery":
            subscriptions.requeue_dead(letter.subject_id)
        letter.status, letter.resolved_at = "retried", utcnow()
        letter.save()
    if letter.kind == "delivery":
        signals.deliveries_due.send()
    else:
        signals.tasks_ready.send()
    return letter


def discard(dead_letter_id: str) -> DeadLetter:
    with write_transaction():
        letter = _open(dead_letter_id)
        letter.status, letter.resolved_at = "discarded", utcnow()
        letter.save()
    return letter
