"""Triggers: an event type glob and an optional jq filter start an action."""

from __future__ import annotations

from db import automation
from db.automation import Trigger
from db.pagination import list_page
from generated.models import TriggerCreate
from handlers import body_fields
from hub.http import context
from hub.services import triggers


def list_triggers(limit=50, cursor=None):
    """List triggers, newest first."""
    return list_page(
        automation.triggers(), Trigger.id, limit=limit, cursor=cursor, descending=True
    ), 200


def create_trigger(body):
    """Create a trigger."""
    trigger = triggers.create(body_fields(TriggerCreate, body))
    headers = {"Location": f"/api/v1/triggers/{trigger.id}", "ETag": trigger.etag}
    return trigger.to_api(), 201, headers


def get_trigger(trigger_id):
    """One trigger."""
    trigger = triggers.get(trigger_id)
    return trigger.to_api(), 200, {"ETag": trigger.etag}


def update_trigger(trigger_id, body):
    """Replace a trigger."""
    trigger = triggers.replace(
        trigger_id, body_fields(TriggerCreate, body), if_match=context.header("If-Match")
    )
    return trigger.to_api(), 200, {"ETag": trigger.etag}


def delete_trigger(trigger_id):
    """Delete a trigger."""
    triggers.delete(trigger_id)
    return None, 204
