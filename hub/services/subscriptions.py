"""Outbound subscriptions and the state of their deliveries.

A subscription's secret is write-only and encrypted at rest (``hub.core.crypto``, the same key as
provider keys and tool headers). The durable event processor calls :func:`consume` with the
new events; it queues one ``pending`` delivery per matching active subscription inside the
processor's transaction (the one that moves its cursor), so an event is queued exactly
once. ``hub.runtime.deliveries`` then claims due deliveries with a lease (``lease_owner``,
``lease_expires_at``) exactly as workers claim tasks, and records each attempt's outcome
here, fenced on the lease and the attempt number: an attempt whose lease lapsed and was
taken over records nothing.

Deleting a subscription deletes its deliveries (pending ones never run; an attempt already
on the wire finds no row to record into) and discards their open dead letters.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import httpx
import peewee

from db import events as db_events
from db import subscriptions
from db.base import claim_first, database, new_id, utcnow, write_transaction
from db.dead_letters import DeadLetter
from db.subscriptions import Delivery, Subscription
from hub.core import crypto, signals
from hub.core.problems import Unprocessable, require
from hub.events import log as event_log
from hub.services import audit, notifications
from hub.settings import current_settings

ERROR_LIMIT = 500  # characters of last_error kept


def _check_url(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise Unprocessable(
            "The url must be an http or https URL with a host.",
            code="invalid_url",
            errors=[{"field": "body.url", "message": "not an http(s) URL with a host"}],
        )


def create(body: dict) -> Subscription:
    """Store a subscription; its secret is encrypted. Addresses are checked at delivery time
    (each attempt), not here: DNS answers change."""
    _check_url(body["url"])
    now = utcnow()
    with write_transaction():
        sub = Subscription.create(
            id=new_id("sub"),
            url=body["url"],
            types=body["types"],
            secret_encrypted=crypto.box().encrypt(body["secret"]),
            description=body.get("description", ""),
            active=body.get("active", True),
            created_at=now,
            updated_at=now,
        )
        event_log.emit(
            "subscription.created",
            subject=sub.id,
            payload={"subscription_id": sub.id, "types": sub.types, "active": sub.active},
        )
        audit.created("subscriptions", sub.id)
    return sub


def get(subscription_id: str) -> Subscription:
    return require(subscriptions.get(subscription_id), "subscription", subscription_id)


def delete(subscription_id: str) -> None:
    """Delete a subscription, its deliveries (pending ones never run) and close its dead
    letters as discarded."""
    with write_transaction():
        sub = get(subscription_id)
        theirs = Delivery.select(Delivery.id).where(Delivery.subscription_id == sub.id)
        DeadLetter.update(status="discarded", resolved_at=utcnow()).where(
            (DeadLetter.kind == "delivery")
            & (DeadLetter.status == "open")
            & DeadLetter.subject_id.in_(theirs)
        ).execute()
        Delivery.delete().where(Delivery.subscription_id == sub.id).execute()
        sub.delete_instance()
        event_log.emit("subscription.deleted", subject=sub.id, payload={"subscription_id": sub.id})


def own_event(event) -> bool:
    """The hub's own events about deliveries are never delivered (no feedback loops)."""
    return event.source == "hub" and event.type.startswith("delivery.")


def consume(events: list) -> None:
    """Queue a delivery for each active subscription matching each event (inside the
    processor's transaction; the events are ``db.events.Event`` rows, oldest first)."""
    subs = subscriptions.active()
    if not subs:
        return
    now = utcnow()
    rows = [
        {
            "id": new_id("dlv"),
            "subscription_id": sub.id,
            "event_id": event.id,
            "event_type": event.type,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in events
        if not own_event(event)
        for sub in subs
        if event_log.matches(sub.types, event.type)
    ]
    if rows:
        with write_transaction():
            for chunk in peewee.chunked(rows, 100):
                Delivery.insert_many(chunk).execute()
        # Peewee's own hook: it runs once the outermost transaction has committed (on
        # Peewee 4.5, db.base.after_commit runs at a savepoint's release, before the commit).
        database.after_commit(signals.deliveries_due.send)


# --- the deliverer's side ----------------------------------------------------------------


class Undeliverable(Exception):
    """The delivery can never succeed (its event is gone); ``str`` says why."""


@dataclass(frozen=True)
class Target:
    url: str
    secret: str
    event_type: str
    body: bytes  # the event as the API shows it


def prepare(delivery: Delivery) -> Target | None:
    """What to POST where, or ``None`` when the subscription was deleted meanwhile. Raises
    Undeliverable when retention trimmed the event, CryptoError when the secret cannot be
    decrypted (``AETHER_SECRET_KEY`` changed)."""
    sub = subscriptions.get(delivery.subscription_id)
    if sub is None:
        return None
    event = db_events.get(delivery.event_id)
    if event is None:
        raise Undeliverable(
            f"event {delivery.event_id} was removed by retention before it could be delivered"
        )
    body = json.dumps(event.to_api(), ensure_ascii=False, separators=(",", ":"))
    return Target(sub.url, crypto.box().decrypt(sub.secret_encrypted), event.type, body.encode())


def claim(owner: str, lease_seconds: float) -> Delivery | None:
    """Take the delivery that has waited longest for its due attempt, with a lease; the
    attempt counts from here (a holder that dies spends it)."""
    max_attempts = current_settings().delivery_max_attempts
    while True:
        now = utcnow()
        source = subscriptions.due(now)
        if not source.exists():  # idle: no write lock taken just to find nothing
            return None
        with write_transaction():
            delivery = claim_first(
                source,
                lease_owner=owner,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                attempts=Delivery.attempts + 1,
            )
            if delivery is None:
                return None
            if delivery.attempts <= max_attempts:
                return delivery
            # Its holder stopped during the last attempt.
            delivery.attempts = max_attempts
            _fail_for_good(delivery, None, "the hub stopped during the last attempt")


def _fence(delivery: Delivery):
    return (
        (Delivery.id == delivery.id)
        & (Delivery.lease_owner == delivery.lease_owner)
        & (Delivery.attempts == delivery.attempts)
        & (Delivery.status == "pending")
    )


def _fenced_update(delivery: Delivery, **fields) -> bool:
    fields = {"lease_owner": None, "lease_expires_at": None, **fields}
    return bool(Delivery.update(**fields).where(_fence(delivery)).execute())


def delivered(delivery: Delivery, status_code: int) -> bool:
    """Record a 2xx; False when the lease was lost (nothing recorded)."""
    with write_transaction():
        return _fenced_update(
            delivery,
            status="delivered",
            delivered_at=utcnow(),
            next_attempt_at=None,
            last_status_code=status_code,
            last_error=None,
        )


def failed_attempt(
    delivery: Delivery, status_code: int | None, error: str, *, final: bool = False
) -> bool:
    """Record a failed attempt: retry after a backoff, or (last attempt, or ``final``) fail
    for good with a dead letter. False when the lease was lost (nothing recorded)."""
    settings = current_settings()
    error = error[:ERROR_LIMIT]
    with write_transaction():
        if final or delivery.attempts >= settings.delivery_max_attempts:
            return _fail_for_good(delivery, status_code, error, fence=True)
        delay = min(
            settings.delivery_backoff_seconds * 2 ** (delivery.attempts - 1),
            settings.delivery_backoff_max_seconds,
        )
        return _fenced_update(
            delivery,
            next_attempt_at=utcnow() + dt.timedelta(seconds=delay),
            last_status_code=status_code,
            last_error=error,
        )


def _fail_for_good(
    delivery: Delivery, status_code: int | None, error: str, *, fence: bool = False
) -> bool:
    fields = {
        "status": "failed",
        "next_attempt_at": None,
        "last_status_code": status_code,
        "last_error": error,
    }
    if fence:
        if not _fenced_update(delivery, **fields):
            return False
    else:
        Delivery.update(
            lease_owner=None, lease_expires_at=None, attempts=delivery.attempts, **fields
        ).where(Delivery.id == delivery.id).execute()
    now = utcnow()
    DeadLetter.create(
        id=new_id("dlq"),
        kind="delivery",
        subject_id=delivery.id,
        status="open",
        reason=f"Delivery failed after {delivery.attempts} attempt(s).",
        error={"status_code": status_code, "detail": error},
        attempts=delivery.attempts,
        created_at=now,
    )
    event_log.emit(
        "delivery.failed",
        subject=delivery.id,
        payload={
            "delivery_id": delivery.id,
            "subscription_id": delivery.subscription_id,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "attempts": delivery.attempts,
            "last_status_code": status_code,
            "last_error": error,
        },
    )
    _notify(delivery, error)
    return True


def _notify(delivery: Delivery, error: str) -> None:
    """One unread notification per failing subscription, not one per dead delivery."""
    notifications.create(
        kind="delivery_failed",
        severity="error",
        title=f"Deliveries to subscription {delivery.subscription_id} are failing",
        message=f"Delivery {delivery.id} ({delivery.event_type}) failed for good: {error}",
        subject=delivery.subscription_id,
        unless_unread=True,
    )


def hand_back(delivery: Delivery) -> None:
    """Return a held delivery at once, the attempt not counted (a clean stop)."""
    with write_transaction():
        _fenced_update(delivery, attempts=Delivery.attempts - 1)


def requeue_dead(delivery_id: str) -> None:
    """Retry from the dead-letter list (inside the caller's transaction): fresh attempts,
    due now."""
    Delivery.update(
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        lease_owner=None,
        lease_expires_at=None,
        last_status_code=None,
        last_error=None,
        delivered_at=None,
    ).where((Delivery.id == delivery_id) & (Delivery.status == "failed")).execute()
