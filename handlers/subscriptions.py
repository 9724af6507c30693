"""Outbound subscriptions: signed POSTs of matching events, and their deliveries."""

from __future__ import annotations

from db import subscriptions as db_subscriptions
from db.pagination import list_page
from db.subscriptions import Delivery, Subscription
from generated.models import SubscriptionCreate
from handlers import body_fields
from hub.services import subscriptions


def list_subscriptions(limit=50, cursor=None):
    """List subscriptions, newest first."""
    query = db_subscriptions.subscriptions()
    return list_page(
        query, Subscription.id, limit=limit, cursor=cursor, descending=True, views=_with_counts
    ), 200


def _with_counts(rows: list[Subscription]) -> list[dict]:
    counts = db_subscriptions.delivery_counts([row.id for row in rows])
    return [row.to_api(counts[row.id]) for row in rows]


def create_subscription(body):
    """Create a subscription."""
    fields = body_fields(SubscriptionCreate, body)
    sub = subscriptions.create(fields)
    headers = {"Location": f"/api/v1/subscriptions/{sub.id}", "ETag": sub.etag}
    return sub.to_api(), 201, headers


def get_subscription(subscription_id):
    """One subscription."""
    sub = subscriptions.get(subscription_id)
    counts = db_subscriptions.delivery_counts([sub.id])[sub.id]
    return sub.to_api(counts), 200, {"ETag": sub.etag}


def delete_subscription(subscription_id):
    """Delete a subscription."""
    subscriptions.delete(subscription_id)
    return None, 204


def list_deliveries(subscription_id, limit=50, cursor=None, status=None):
    """A subscription's deliveries, newest first."""
    subscriptions.get(subscription_id)
    query = db_subscriptions.deliveries(subscription_id, status=status)
    return list_page(query, Delivery.id, limit=limit, cursor=cursor, descending=True), 200
