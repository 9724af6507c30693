"""Integrations: a source (GitHub, GitLab, generic) connected to the hub, with write-only
credentials and webhook secret."""

from __future__ import annotations

from db import projects
from db.pagination import list_page
from db.projects import Integration
from generated.models import IntegrationCreate
from handlers import body_fields
from hub.core.problems import require
from hub.http import context
from hub.services import integrations as service


def _one(integration: Integration, status: int = 200, *, created: bool = False):
    headers = {"ETag": integration.etag}
    if created:
        headers["Location"] = f"/api/v1/integrations/{integration.id}"
    return integration.to_api(), status, headers


def list_integrations(limit=50, cursor=None, project_id=None):
    """List integrations, newest first."""
    query = projects.integrations(project_id=project_id)
    return list_page(query, Integration.id, limit=limit, cursor=cursor, descending=True), 200


def create_integration(body):
    """Create a integration."""
    return _one(service.create(body_fields(IntegrationCreate, body)), 201, created=True)


def get_integration(integration_id):
    """One integration."""
    return _one(require(projects.get_integration(integration_id), "integration", integration_id))


def update_integration(integration_id, body):
    """Replace a integration."""
    changes = body_fields(IntegrationCreate, body)
    return _one(service.update(integration_id, changes, if_match=context.header("If-Match")))


def delete_integration(integration_id):
    """Delete a integration."""
    service.delete(integration_id)
    return None, 204
