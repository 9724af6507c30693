"""Event mappings: which source webhooks become which canonical events."""

from __future__ import annotations

from db import projects
from db.pagination import list_page
from db.projects import EventMapping
from generated.models import EventMappingCreate
from handlers import body_fields
from hub.services import event_mappings as service


def list_event_mappings(limit=50, cursor=None, source=None):
    """List event mappings."""
    query = projects.mappings(source=source)
    return list_page(query, EventMapping.id, limit=limit, cursor=cursor), 200


def create_event_mapping(body):
    """Map a source's webhook to a canonical event type."""
    fields = body_fields(EventMappingCreate, body)
    mapping = service.create(fields)
    return mapping.to_api(), 201, {"Location": f"/api/v1/event-mappings/{mapping.id}"}


def seed_event_mappings():
    """Install the default mappings for GitHub and GitLab."""
    return service.seed(), 200


def delete_event_mapping(mapping_id):
    """Delete an event mapping."""
    service.delete(mapping_id)
    return None, 204
