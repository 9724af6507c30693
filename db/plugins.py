"""Plugins and their installed versions (each version's manifest kept for rollback)."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, iso


class Plugin(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=64)
    version = peewee.CharField(max_length=32)  # the current version
    enabled = peewee.BooleanField(default=True)
    revision = peewee.IntegerField(default=1)  # raised by every change: the ETag
    installed_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'


class PluginVersion(BaseModel):
    id = peewee.BigAutoField()
    plugin_id = peewee.CharField(max_length=64, index=True)
    version = peewee.CharField(max_length=32)
    manifest = JSONField()
    sha256 = peewee.CharField(max_length=64)
    installed_at = peewee.DateTimeField()

    class Meta:
        table_name = "plugin_version"
        indexes = ((("plugin_id", "version"), True),)

    def to_api(self, current: str) -> dict:
        return {
            "version": self.version,
            "sha256": self.sha256,
            "current": self.version == current,
            "installed_at": iso(self.installed_at),
        }


def get(plugin_id: str) -> Plugin | None:
    return Plugin.get_or_none(Plugin.id == plugin_id)


def plugins() -> peewee.Select:
    return Plugin.select()


def version(plugin_id: str, number: str) -> PluginVersion | None:
    return PluginVersion.get_or_none(
        (PluginVersion.plugin_id == plugin_id) & (PluginVersion.version == number)
    )


def versions(plugin_id: str) -> peewee.Select:
    return PluginVersion.select().where(PluginVersion.plugin_id == plugin_id)
