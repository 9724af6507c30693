"""Integration writes. ``credentials`` (an object of strings) and ``webhook_secret`` are
write-only and encrypted at rest with the hub's secret box, like provider keys and tool
headers; only their presence and the credentials' names are ever shown. On replace, an
omitted ``credentials`` or ``webhook_secret`` keeps the stored value and ``null`` (or an
empty ``credentials`` object) clears it. Each change is an ``integration.created`` /
``integration.updated`` / ``integration.deleted`` event (never with a secret in it)."""

from __future__ import annotations

import json

import peewee

from db import projects
from db.base import new_id, utcnow, write_transaction
from db.projects import Integration
from hub.core import crypto
from hub.core.problems import Conflict, Unprocessable, require
from hub.events import log as events
from hub.services import audit
from hub.services.etags import check_if_match

SECRETS = ("credentials", "webhook_secret")


def webhook_secret(integration: Integration) -> str | None:
    """The integration's webhook secret in clear, or None when it has none."""
    if integration.webhook_secret_encrypted is None:
        return None
    return crypto.box().decrypt(integration.webhook_secret_encrypted)


def credentials(integration: Integration) -> dict[str, str]:
    """The integration's credentials in clear (for code that calls the source)."""
    if integration.credentials_encrypted is None:
        return {}
    return json.loads(crypto.box().decrypt(integration.credentials_encrypted))


def _plain_fields(body: dict) -> dict:
    return {
        "kind": body["kind"],
        "slug": body["slug"],
        "name": body.get("name") or "",
        "project_id": body.get("project_id"),
        "active": body.get("active", True),
    }


def _secret_fields(body: dict) -> dict:
    """The encrypted columns for the secrets the body names (absent ones are left alone)."""
    fields: dict = {}
    if "credentials" in body:
        values = body["credentials"] or {}
        encrypted = crypto.box().encrypt(json.dumps(values)) if values else None
        fields["credentials_encrypted"] = encrypted
        fields["credential_names"] = sorted(values)
    if "webhook_secret" in body:
        secret = body["webhook_secret"]
        fields["webhook_secret_encrypted"] = crypto.box().encrypt(secret) if secret else None
    return fields


def _check_project(project_id: str | None) -> None:
    """422 naming ``body.project_id`` unless the project exists; locks it until commit."""
    if project_id is not None and projects.get_project(project_id, lock=True) is None:
        raise Unprocessable(
            f"No project with id {project_id!r}.",
            code="project_not_found",
            errors=[{"field": "body.project_id", "message": "no such project"}],
        )


def _slug_taken(slug: str) -> Conflict:
    return Conflict(f"An integration with slug {slug!r} exists.", code="integration_exists")


def create(body: dict) -> Integration:
    now = utcnow()
    fields = {**_plain_fields(body), **_secret_fields(body)}
    try:
        with write_transaction():
            _check_project(fields["project_id"])
            integration = Integration.create(
                id=new_id("itg"), created_at=now, updated_at=now, **fields
            )
            _written("integration.created", integration)
            audit.created("integrations", integration.id)
    except peewee.IntegrityError:
        raise _slug_taken(body["slug"]) from None
    return integration


def _written(kind: str, integration: Integration) -> None:
    events.emit(
        kind,
        subject=integration.id,
        payload={
            "integration_id": integration.id,
            "kind": integration.kind,
            "slug": integration.slug,
            "project_id": integration.project_id,
            "active": integration.active,
        },
    )


def update(integration_id: str, body: dict, *, if_match: str | None) -> Integration:
    """Replace an integration; secrets the body leaves out are kept."""
    plain, secrets = _plain_fields(body), _secret_fields(body)
    try:
        with write_transaction():
            integration = require(
                projects.get_integration(integration_id), "integration", integration_id
            )
            check_if_match(if_match, integration.etag)
            _check_project(plain["project_id"])
            unchanged = not secrets and all(
                getattr(integration, name) == value for name, value in plain.items()
            )
            if unchanged:
                return integration
            for name, value in {**plain, **secrets}.items():
                setattr(integration, name, value)
            integration.version += 1
            integration.updated_at = utcnow()
            integration.save()
            _written("integration.updated", integration)
    except peewee.IntegrityError:
        raise _slug_taken(body["slug"]) from None
    return integration


def delete(integration_id: str) -> None:
    """Delete an integration (its webhook receipts go with it)."""
    with write_transaction():
        integration = require(
            projects.get_integration(integration_id), "integration", integration_id
        )
        projects.WebhookReceipt.delete().where(
            projects.WebhookReceipt.integration_id == integration.id
        ).execute()
        integration.delete_instance()
        events.emit(
            "integration.deleted",
            subject=integration_id,
            payload={"integration_id": integration_id, "slug": integration.slug},
        )
