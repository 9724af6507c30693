"""Outbound webhook subscriptions and their deliveries."""

from __future__ import annotations

import hashlib

import peewee

from db.base import BaseModel, JSONField, iso

DELIVERY_STATUSES = ("pending", "delivered", "failed")


class Subscription(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    url = peewee.TextField()
    types = JSONField()
    secret_encrypted = peewee.TextField()
    description = peewee.TextField(default="")
    active = peewee.BooleanField(default=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    @property
    def etag(self) -> str:
        """Changes whenever the subscription does (it has no version column)."""
        return '"' + hashlib.sha256(iso(self.updated_at).encode()).hexdigest()[:16] + '"'

    def to_api(self, counts: dict[str, int] | None = None) -> dict:
        """The subscription as the API shows it (never the secret); ``counts`` are its
        deliveries per status."""
        counts = counts or {}
        return {
            "id": self.id,
            "url": self.url,
            "types": self.types,
            "description": self.description,
            "active": self.active,
            "has_secret": bool(self.secret_encrypted),
            **{status: counts.get(status, 0) for status in DELIVERY_STATUSES},
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class Delivery(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    subscription_id = peewee.CharField(max_length=40, index=True)
    event_id = peewee.BigIntegerField(index=True)
    event_type = peewee.CharField(max_length=120)
    status = peewee.CharField(max_length=16)
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(null=True)
    lease_owner = peewee.CharField(max_length=64, null=True)
    lease_expires_at = peewee.DateTimeField(null=True)
    last_status_code = peewee.IntegerField(null=True)
    last_error = peewee.TextField(null=True)
    delivered_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "subscription_id": self.subscription_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "status": self.status,
            "attempts": self.attempts,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "next_attempt_at": iso(self.next_attempt_at) if self.status == "pending" else None,
            "delivered_at": iso(self.delivered_at),
            "created_at": iso(self.created_at),
        }


def get(subscription_id: str) -> Subscription | None:
    return Subscription.get_or_none(Subscription.id == subscription_id)


def subscriptions() -> peewee.Select:
    return Subscription.select()


def active() -> list[Subscription]:
    return list(Subscription.select().where(Subscription.active).order_by(Subscription.id))


def delivery(delivery_id: str) -> Delivery | None:
    return Delivery.get_or_none(Delivery.id == delivery_id)


def deliveries(subscription_id: str, *, status: str | None = None) -> peewee.Select:
    query = Delivery.select().where(Delivery.subscription_id == subscription_id)
    if status:
        query = query.where(Delivery.status == status)
    return query


def delivery_counts(subscription_ids: list[str]) -> dict[str, dict[str, int]]:
    """``{subscription_id: {"delivered": n, "failed": n, "pending": n}}`` for each id."""
    counts = {sid: dict.fromkeys(DELIVERY_STATUSES, 0) for sid in subscription_ids}
    if not subscription_ids:
        return counts
    rows = (
        Delivery.select(Delivery.subscription_id, Delivery.status, peewee.fn.COUNT(Delivery.id))
        .where(Delivery.subscription_id.in_(subscription_ids))
        .group_by(Delivery.subscription_id, Delivery.status)
        .tuples()
    )
    for subscription_id, status, count in rows:
        counts[subscription_id][status] = count
    return counts


def due(now) -> peewee.Select:
    """Pending deliveries whose attempt is due and that nobody holds (or whose holder's lease
    lapsed), the longest waiting first."""
    return (
        Delivery.select()
        .where(
            (Delivery.status == "pending")
            & (Delivery.next_attempt_at <= now)
            & (Delivery.lease_owner.is_null() | (Delivery.lease_expires_at < now))
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
    )
