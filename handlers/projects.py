"""Projects: where work comes from (a GitHub repository, a GitLab project …)."""

from __future__ import annotations

from db import projects
from db.pagination import list_page
from db.projects import Project
from generated.models import ProjectCreate
from handlers import body_fields
from hub.core.problems import require
from hub.http import context
from hub.services import projects as service


def _one(project: Project, status: int = 200, *, created: bool = False):
    headers = {"ETag": project.etag}
    if created:
        headers["Location"] = f"/api/v1/projects/{project.id}"
    return project.to_api(), status, headers


def list_projects(limit=50, cursor=None, source=None):
    """List projects, newest first."""
    return list_page(
        projects.projects(source=source), Project.id, limit=limit, cursor=cursor, descending=True
    ), 200


def create_project(body):
    """Create a project."""
    fields = body_fields(ProjectCreate, body)
    return _one(service.create(fields), 201, created=True)


def get_project(project_id):
    """One project."""
    return _one(require(projects.get_project(project_id), "project", project_id))


def update_project(project_id, body):
    """Replace a project."""
    fields = body_fields(ProjectCreate, body)
    return _one(service.update(project_id, fields, if_match=context.header("If-Match")))


def delete_project(project_id):
    """Delete a project."""
    service.delete(project_id)
    return None, 204
