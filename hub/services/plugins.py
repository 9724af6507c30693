"""Plugins: installed from a manifest (JSON, or ``plugin.yaml`` at the root of a ``.tar.gz`` /
``.zip`` read by :mod:`hub.core.archives`), they bring HTTP tools, MCP server definitions,
Agent Skills and tool groups, never code the hub runs and never credentials.

What an enabled plugin brings exists as ordinary rows marked ``source = "plugin:<id>"`` (so
agents, ``/tools``, tool groups and approvals need nothing new); disabling the plugin removes
those rows and enabling puts them back from the current version's manifest, which every
installed version keeps. A name the plugin brings that belongs to something it does not own
is a conflict (409 ``plugin_conflict``), at install as at enable. Upgrading is installing a
newer version; the previous ones stay for ``rollback``. Each change is one write transaction
and one ``plugin.*`` event."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from typing import Any

import jsonschema
import yaml
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from db import mcp_servers as db_mcp
from db import plugins as db_plugins
from db import skills as db_skills
from db import tools as db_tools
from db.base import iso, utcnow, write_transaction
from db.mcp_servers import McpServer
from db.plugins import Plugin, PluginVersion
from db.skills import Skill
from db.tools import Tool, ToolGroup
from hub.core import agent_skills, archives, spec
from hub.core.problems import Conflict, NotFound, Unprocessable, require
from hub.events import log as events
from hub.services import audit, mcp_servers, skills, tool_groups
from hub.services import tools as tool_service

MANIFEST = "plugin.yaml"


# --- reading a manifest --------------------------------------------------------------------


def from_archive(data: bytes, filename: str | None, content_type: str | None, settings) -> dict:
    """The manifest of an uploaded archive, checked against the contract's ``PluginManifest``
    (422 naming ``plugin.yaml:<field>``); an unsafe archive is refused by the archive reader."""
    kind = archives.archive_kind(filename, content_type, data)
    files = archives.read_archive(data, kind, **archives.archive_limits(settings))
    if MANIFEST not in files:
        raise Unprocessable(
            f"The archive holds no {MANIFEST} at its root.",
            code="invalid_manifest",
            errors=[{"field": "body.file", "message": f"no {MANIFEST} at the root"}],
        )
    try:
        manifest = yaml.safe_load(files[MANIFEST].decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise Unprocessable(
            f"{MANIFEST} is not YAML: {exc}.",
            code="invalid_manifest",
            errors=[{"field": MANIFEST, "message": "not UTF-8 YAML"}],
        ) from None
    _check_shape(manifest)
    folders = sorted({path.split("/")[1] for path in files if path.startswith("skills/")
                      and path.count("/") >= 2 and path.endswith("/SKILL.md")
                      and path.count("/") == 2})  # fmt: skip
    if folders:
        manifest = {**manifest, "skills": [*(manifest.get("skills") or [])]}
        for folder in folders:
            prefix = f"skills/{folder}/"
            manifest["skills"].append(
                {
                    "skill_md": files[prefix + "SKILL.md"].decode("utf-8", "replace"),
                    "files": {
                        path[len(prefix) :]: base64.b64encode(content).decode()
                        for path, content in files.items()
                        if path.startswith(prefix)
                        and path[len(prefix) :].split("/", 1)[0] in agent_skills.FOLDERS
                    },
                }
            )
        _check_shape(manifest)
    return manifest


def _check_shape(manifest: Any) -> None:
    document = spec.load()
    schema = {**document["components"]["schemas"]["PluginManifest"]}
    schema["components"] = document["components"]
    validator = jsonschema.Draft4Validator(schema)
    found = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if found:
        raise Unprocessable(
            f"{MANIFEST} does not fit the contract's PluginManifest.",
            code="invalid_manifest",
            errors=[
                {"field": f"{MANIFEST}:{_path(e.absolute_path)}", "message": e.message}
                for e in found[:20]
            ],
        )


def _path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _digest(manifest: dict) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _number(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# --- what a plugin brings ------------------------------------------------------------------


def _source(plugin_id: str) -> str:
    return f"plugin:{plugin_id}"


def _bring(plugin_id: str, manifest: dict) -> None:
    """Create what the manifest brings through the services that own each kind (inside the
    caller's write transaction); a name taken by something else is a conflict, a problem in
    an item is a 422 naming it in the manifest (``tools[0].parameters``)."""
    source = _source(plugin_id)
    for index, tool in enumerate(manifest.get("tools") or []):
        _unowned(plugin_id, "tool", tool["name"], tool_service.resolve(tool["name"]))
        with _fields_of(f"tools[{index}]"):
            tool_service.register(tool, source=source)
    for server in manifest.get("mcp_servers") or []:
        _unowned(plugin_id, "MCP server", server["id"], db_mcp.get(server["id"]))
        with _fields_of("mcp_servers"):
            mcp_servers.register(server, source=source)
    for index, body in enumerate(manifest.get("skills") or []):
        with _fields_of(f"skills[{index}]"):
            parsed = skills.parse_body(body)
        _unowned(plugin_id, "skill", parsed.name, db_skills.get(parsed.name))
        skills.create(parsed, source=source, actor=None)
    for index, group in enumerate(manifest.get("tool_groups") or []):
        _unowned(plugin_id, "tool group", group["name"], db_tools.get_group(group["name"]))
        with _fields_of(f"tool_groups[{index}]"):
            tool_groups.create(group, source=source)


def _unowned(plugin_id: str, kind: str, name: str, existing) -> None:
    if existing is not None:
        raise Conflict(
            f"Plugin {plugin_id!r} brings the {kind} {name!r}, which exists already.",
            code="plugin_conflict",
        )


@contextlib.contextmanager
def _fields_of(item: str):
    """A service's 422 about its request body, named as the manifest item it came from."""
    try:
        yield
    except Unprocessable as exc:
        for error in exc.errors or []:
            error["field"] = f"{item}." + error["field"].removeprefix("body.")
        raise


def _take_back(plugin_id: str) -> None:
    """Remove the rows the plugin brought; refused while an agent lists a group of it."""
    source = _source(plugin_id)
    for group in ToolGroup.select().where(ToolGroup.source == source):
        users = tool_groups.agents_listing(group.name)
        if users:
            raise Conflict(
                f"Agents list the tool group {group.name!r} that plugin {plugin_id!r} brings: "
                f"{', '.join(users)}.",
                code="tool_group_in_use",
            )
    ToolGroup.delete().where(ToolGroup.source == source).execute()
    Tool.delete().where(Tool.source == source).execute()
    for server in McpServer.select(McpServer.id).where(McpServer.source == source):
        mcp_servers.delete(server.id)
    for skill in Skill.select(Skill.name).where(Skill.source == source):
        skills.delete(skill.name)


def _brings(manifest: dict) -> dict:
    return {
        "tools": [tool["name"] for tool in manifest.get("tools") or []],
        "tool_groups": [group["name"] for group in manifest.get("tool_groups") or []],
        "mcp_servers": [server["id"] for server in manifest.get("mcp_servers") or []],
        "skills": [_skill_name(body) for body in manifest.get("skills") or []],
    }


def _skill_name(body: dict) -> str:
    try:
        return agent_skills.parse(body["skill_md"].encode(), {}).name
    except Unprocessable:
        return ""


def to_api(plugin: Plugin, current: PluginVersion | None = None) -> dict:
    current = current or db_plugins.version(plugin.id, plugin.version)
    return {
        "id": plugin.id,
        "version": plugin.version,
        "description": current.manifest.get("description") or "",
        "enabled": plugin.enabled,
        "brings": _brings(current.manifest),
        "sha256": current.sha256,
        "revision": plugin.revision,
        "installed_at": iso(plugin.installed_at),
        "updated_at": iso(plugin.updated_at),
    }


# --- the lifecycle -------------------------------------------------------------------------


def install(manifest: dict) -> tuple[dict, bool]:
    """Install (True) or upgrade (False) to the manifest's version; the answer and which."""
    plugin_id, number, now = manifest["name"], manifest["version"], utcnow()
    with write_transaction():
        plugin = db_plugins.get(plugin_id)
        if plugin is not None:
            if db_plugins.version(plugin_id, number) is not None:
                raise Conflict(
                    f"Plugin {plugin_id!r} {number} is installed already.",
                    code="plugin_version_exists",
                )
            if _number(number) <= _number(plugin.version):
                raise Conflict(
                    f"Plugin {plugin_id!r} is at {plugin.version}; {number} is not newer "
                    "(roll back to an installed version with rollback).",
                    code="plugin_not_newer",
                )
        row = PluginVersion.create(
            plugin_id=plugin_id,
            version=number,
            manifest=manifest,
            sha256=_digest(manifest),
            installed_at=now,
        )
        if plugin is None:
            plugin = Plugin.create(id=plugin_id, version=number, installed_at=now, updated_at=now)
            _bring(plugin_id, manifest)
            kind, created = "plugin.installed", True
            audit.created("plugins", plugin_id)
        else:
            if plugin.enabled:
                _take_back(plugin_id)
                _bring(plugin_id, manifest)
            previous = plugin.version
            _touch(plugin, version=number)
            kind, created = "plugin.upgraded", False
            audit.answers(200)
        _emit(kind, plugin, row, **({} if created else {"previous": previous}))
    return to_api(plugin, row), created


def enable(plugin_id: str) -> dict:
    with write_transaction():
        plugin = require(db_plugins.get(plugin_id), "plugin", plugin_id)
        current = db_plugins.version(plugin_id, plugin.version)
        if not plugin.enabled:
            _bring(plugin_id, current.manifest)
            _touch(plugin, enabled=True)
            _emit("plugin.enabled", plugin, current)
    return to_api(plugin, current)


def disable(plugin_id: str) -> dict:
    with write_transaction():
        plugin = require(db_plugins.get(plugin_id), "plugin", plugin_id)
        current = db_plugins.version(plugin_id, plugin.version)
        if plugin.enabled:
            _take_back(plugin_id)
            _touch(plugin, enabled=False)
            _emit("plugin.disabled", plugin, current)
    return to_api(plugin, current)


def rollback(plugin_id: str, number: str) -> dict:
    with write_transaction():
        plugin = require(db_plugins.get(plugin_id), "plugin", plugin_id)
        target = db_plugins.version(plugin_id, number)
        if target is None:
            raise NotFound(
                f"Plugin {plugin_id!r} has no installed version {number}.",
                code="plugin_version_not_found",
            )
        if target.version != plugin.version:
            if plugin.enabled:
                _take_back(plugin_id)
                _bring(plugin_id, target.manifest)
            previous = plugin.version
            _touch(plugin, version=number)
            _emit("plugin.rolled_back", plugin, target, previous=previous)
    return to_api(plugin, target)


def uninstall(plugin_id: str) -> None:
    with write_transaction():
        plugin = require(db_plugins.get(plugin_id), "plugin", plugin_id)
        if plugin.enabled:
            _take_back(plugin_id)
        PluginVersion.delete().where(PluginVersion.plugin_id == plugin_id).execute()
        plugin.delete_instance()
        events.emit("plugin.uninstalled", subject=plugin_id, payload={"plugin_id": plugin_id})


def _touch(plugin: Plugin, **changes) -> None:
    for name, value in changes.items():
        setattr(plugin, name, value)
    plugin.revision += 1
    plugin.updated_at = utcnow()
    plugin.save()


def _emit(kind: str, plugin: Plugin, version: PluginVersion, **extra) -> None:
    events.emit(
        kind,
        subject=plugin.id,
        payload={
            "plugin_id": plugin.id,
            "version": version.version,
            "enabled": plugin.enabled,
            "brings": _brings(version.manifest),
            **extra,
        },
    )


# --- metrics -------------------------------------------------------------------------------


def counts() -> dict[str, int]:
    """For the Prometheus gauges: plugins installed and enabled, and what the enabled ones
    bring, read from the database (every hub sharing it reports the same)."""
    brought_tools = Tool.select().where(Tool.source.startswith("plugin:")).count()
    brought_groups = ToolGroup.select().where(ToolGroup.source.startswith("plugin:")).count()
    brought_servers = McpServer.select().where(McpServer.source.startswith("plugin:")).count()
    brought_skills = Skill.select().where(Skill.source.startswith("plugin:")).count()
    return {
        "installed": Plugin.select().count(),
        "enabled": Plugin.select().where(Plugin.enabled == True).count(),  # noqa: E712
        "tools": brought_tools,
        "tool_groups": brought_groups,
        "mcp_servers": brought_servers,
        "skills": brought_skills,
    }


class _Gauges:
    """``aether_plugins{state}`` and ``aether_plugin_contributions{kind}``, read from the
    database at each scrape (nothing when it cannot be read: a scrape never fails for it)."""

    def collect(self):
        try:
            found = counts()
        except Exception:  # no database bound in this process, or it is down
            return
        plugins = GaugeMetricFamily(
            "aether_plugins", "Installed plugins, by state.", labels=["state"]
        )
        plugins.add_metric(["enabled"], found["enabled"])
        plugins.add_metric(["disabled"], found["installed"] - found["enabled"])
        yield plugins
        brought = GaugeMetricFamily(
            "aether_plugin_contributions",
            "What enabled plugins bring, by kind (tools, tool_groups, mcp_servers, skills).",
            labels=["kind"],
        )
        brought.add_metric(["tools"], found["tools"])
        brought.add_metric(["tool_groups"], found["tool_groups"])
        brought.add_metric(["mcp_servers"], found["mcp_servers"])
        brought.add_metric(["skills"], found["skills"])
        yield brought


REGISTRY.register(_Gauges())
