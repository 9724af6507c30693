"""Plugins: install (a manifest, or an archive holding plugin.yaml), list, enable, disable,
versions, rollback, uninstall."""

from __future__ import annotations

from db import plugins as db_plugins
from db.pagination import list_page
from db.plugins import Plugin, PluginVersion
from hub.core.problems import BadRequest, require
from hub.services import plugins
from hub.settings import current_settings


def _answer(plugin: dict, status: int = 200, *, created: bool = False):
    headers = {"ETag": f'"{plugin["revision"]}"'}
    if created:
        headers["Location"] = f"/api/v1/plugins/{plugin['id']}"
    return plugin, status, headers


def list_plugins(limit=50, cursor=None):
    """Installed plugins, by id."""
    return list_page(
        db_plugins.plugins(), Plugin.id, limit=limit, cursor=cursor, view=plugins.to_api
    ), 200


def install_plugin(body=None, file=None):
    """Install a plugin, or upgrade it to a newer version."""
    if file is not None:
        data = file.file.read() if hasattr(file, "file") else bytes(file)
        manifest = plugins.from_archive(
            data,
            getattr(file, "filename", None),
            getattr(file, "content_type", None),
            current_settings(),
        )
    elif isinstance(body, dict):  # validated by the contract; kept as sent (skills' files stay
        manifest = dict(body)  # base64 text, which the generated model would decode)
    else:
        raise BadRequest("Send a manifest as JSON, or an archive as the file part.")
    plugin, created = plugins.install(manifest)
    return _answer(plugin, 201 if created else 200, created=created)


def get_plugin(plugin_id):
    """One plugin."""
    return _answer(plugins.to_api(require(db_plugins.get(plugin_id), "plugin", plugin_id)))


def uninstall_plugin(plugin_id):
    """Uninstall a plugin."""
    plugins.uninstall(plugin_id)
    return None, 204


def enable_plugin(plugin_id):
    """Enable a plugin."""
    return _answer(plugins.enable(plugin_id))


def disable_plugin(plugin_id):
    """Disable a plugin."""
    return _answer(plugins.disable(plugin_id))


def list_plugin_versions(plugin_id, limit=50, cursor=None):
    """The versions of a plugin kept for rollback, newest first."""
    plugin = require(db_plugins.get(plugin_id), "plugin", plugin_id)
    return list_page(
        db_plugins.versions(plugin_id),
        PluginVersion.id,
        limit=limit,
        cursor=cursor,
        descending=True,
        view=lambda row: row.to_api(plugin.version),
    ), 200


def rollback_plugin(plugin_id, body):
    """Make an earlier installed version current again."""
    return _answer(plugins.rollback(plugin_id, body["version"]))
