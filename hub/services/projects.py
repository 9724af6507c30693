"""Project writes: create, replace (``If-Match``), delete (refused while integrations use it).
Each change is a ``project.created`` / ``project.updated`` / ``project.deleted`` event."""

from __future__ import annotations

from db import projects
from db.base import new_id, utcnow, write_transaction
from db.projects import Project
from hub.core.problems import Conflict, require
from hub.events import log as events
from hub.services import audit
from hub.services.etags import check_if_match


def _fields(body: dict) -> dict:
    return {
        "name": body["name"],
        "description": body.get("description") or "",
        "source": body["source"],
        "source_project_id": body.get("source_project_id"),
    }


def create(body: dict) -> Project:
    now = utcnow()
    with write_transaction():
        project = Project.create(id=new_id("prj"), created_at=now, updated_at=now, **_fields(body))
        _written("project.created", project)
        audit.created("projects", project.id)
    return project


def _written(kind: str, project: Project) -> None:
    events.emit(
        kind,
        subject=project.id,
        payload={
            "project_id": project.id,
            "name": project.name,
            "source": project.source,
            "source_project_id": project.source_project_id,
        },
    )


def update(project_id: str, body: dict, *, if_match: str | None) -> Project:
    """Replace a project; a body equal to what is stored changes nothing (same ETag)."""
    fields = _fields(body)
    with write_transaction():
        project = require(projects.get_project(project_id, lock=True), "project", project_id)
        check_if_match(if_match, project.etag)
        if all(getattr(project, name) == value for name, value in fields.items()):
            return project
        for name, value in fields.items():
            setattr(project, name, value)
        project.version += 1
        project.updated_at = utcnow()
        project.save()
        _written("project.updated", project)
    return project


def delete(project_id: str) -> None:
    with write_transaction():
        project = require(projects.get_project(project_id, lock=True), "project", project_id)
        if projects.has_integrations(project_id):
            raise Conflict(
                f"Project {project_id!r} has integrations: delete or move them first.",
                code="project_in_use",
            )
        project.delete_instance()
        events.emit("project.deleted", subject=project_id, payload={"project_id": project_id})
