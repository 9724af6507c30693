"""Providers configured through the API; their API keys are stored encrypted."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, Versioned


class ProviderConfig(Versioned, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=64)
    kind = peewee.CharField(max_length=16)
    base_url = peewee.TextField(null=True)
    api_key_encrypted = peewee.TextField(null=True)
    models = JSONField(default=list)
    connect_timeout = peewee.FloatField()
    read_timeout = peewee.FloatField()
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "provider"


def get(provider_id: str) -> ProviderConfig | None:
    return ProviderConfig.get_or_none(ProviderConfig.id == provider_id)


def all_configs() -> list[ProviderConfig]:
    return list(ProviderConfig.select().order_by(ProviderConfig.id))


def signature() -> tuple:
    """Changes whenever any stored provider changes (for other processes to reload)."""
    row = ProviderConfig.select(
        peewee.fn.COUNT(ProviderConfig.id), peewee.fn.MAX(ProviderConfig.updated_at)
    ).tuples()
    return tuple(row[0])
