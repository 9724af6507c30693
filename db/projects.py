"""Projects (where work comes from), their integrations, and inbound webhook receipts."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, Versioned, is_postgres, iso


class Project(Versioned, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    name = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    source = peewee.CharField(max_length=16)
    source_project_id = peewee.CharField(max_length=200, null=True)
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "source_project_id": self.source_project_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class Integration(Versioned, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    kind = peewee.CharField(max_length=16)
    slug = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200, default="")
    project_id = peewee.CharField(max_length=40, null=True, index=True)
    credentials_encrypted = peewee.TextField(null=True)
    credential_names = JSONField(default=list)
    webhook_secret_encrypted = peewee.TextField(null=True)
    active = peewee.BooleanField(default=True)
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "slug": self.slug,
            "name": self.name,
            "project_id": self.project_id,
            "active": self.active,
            "has_credentials": self.credentials_encrypted is not None,
            "credential_names": self.credential_names or [],
            "has_webhook_secret": self.webhook_secret_encrypted is not None,
            "webhook_path": f"/api/v1/webhooks/{self.slug}",
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class WebhookReceipt(BaseModel):
    """One inbound delivery, by the source's delivery id: a second one is a replay."""

    id = peewee.BigAutoField()
    integration_id = peewee.CharField(max_length=40)
    delivery_id = peewee.CharField(max_length=200)
    event_id = peewee.BigIntegerField()
    type = peewee.CharField(max_length=120, null=True)
    created_at = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "webhook_receipt"
        indexes = ((("integration_id", "delivery_id"), True),)


class EventMapping(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    source = peewee.CharField(max_length=16)
    event = peewee.CharField(max_length=100)
    action = peewee.CharField(max_length=100, null=True)
    filter = peewee.TextField(null=True)
    type = peewee.CharField(max_length=120)
    created_at = peewee.DateTimeField()
    error_count = peewee.IntegerField(default=0)
    last_error = JSONField(null=True)

    class Meta:
        table_name = "event_mapping"

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            "event": self.event,
            "action": self.action,
            "filter": self.filter,
            "type": self.type,
            "error_count": self.error_count,
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
        }


# --- queries -----------------------------------------------------------------------------


def _locked(query: peewee.Select, lock: bool) -> peewee.Select:
    """``FOR UPDATE`` on PostgreSQL when asked (SQLite's write transaction already holds the
    only write lock)."""
    return query.for_update() if lock and is_postgres() else query


def projects(*, source: str | None = None) -> peewee.Select:
    query = Project.select()
    if source:
        query = query.where(Project.source == source)
    return query


def get_project(project_id: str, *, lock: bool = False) -> Project | None:
    """One project; ``lock`` holds its row until the transaction ends (so a project cannot be
    deleted while an integration is being attached to it, and the other way round)."""
    return _locked(Project.select().where(Project.id == project_id), lock).first()


def integrations(*, project_id: str | None = None) -> peewee.Select:
    query = Integration.select()
    if project_id:
        query = query.where(Integration.project_id == project_id)
    return query


def get_integration(integration_id: str) -> Integration | None:
    return Integration.get_or_none(Integration.id == integration_id)


def integration_by_slug(slug: str) -> Integration | None:
    return Integration.get_or_none(Integration.slug == slug)


def has_integrations(project_id: str) -> bool:
    return integrations(project_id=project_id).exists()


def receipt(integration_id: str, delivery_id: str) -> WebhookReceipt | None:
    return WebhookReceipt.get_or_none(
        (WebhookReceipt.integration_id == integration_id)
        & (WebhookReceipt.delivery_id == delivery_id)
    )


def mappings(*, source: str | None = None) -> peewee.Select:
    query = EventMapping.select()
    if source:
        query = query.where(EventMapping.source == source)
    return query


def mappings_for(source: str, event: str) -> peewee.Select:
    """The mappings a delivery's source and event name can match, in creation order (ids
    sort by creation time)."""
    return (
        EventMapping.select()
        .where((EventMapping.source == source) & (EventMapping.event == event))
        .order_by(EventMapping.id)
    )


def get_mapping(mapping_id: str) -> EventMapping | None:
    return EventMapping.get_or_none(EventMapping.id == mapping_id)


def same_mapping(fields: dict) -> EventMapping | None:
    """The mapping with exactly these source, event, action, filter and type, if any."""
    condition = (EventMapping.source == fields["source"]) & (EventMapping.type == fields["type"])
    condition &= EventMapping.event == fields["event"]
    for name in ("action", "filter"):
        column = getattr(EventMapping, name)
        value = fields.get(name)
        condition &= column.is_null() if value is None else column == value
    return EventMapping.select().where(condition).first()
