"""Tool groups: named sets of tools. An agent's ``tools`` may list ``group:<name>``, which
stands for every tool in the group when the agent's tools are resolved (each step, so an
edited group applies from the next one). A group holds tools only, never other groups, and
every tool in it must exist when the group is written; a registered tool removed later is
skipped, as an agent's own unknown tool names are. Each write is a ``tool_group.created`` /
``tool_group.updated`` / ``tool_group.deleted`` event."""

from __future__ import annotations

import peewee

from db import tools as db_tools
from db.agents import Agent
from db.base import utcnow, write_transaction
from db.tools import ToolGroup
from hub.core.problems import Conflict, Unprocessable, require
from hub.events import log as events
from hub.services import audit
from hub.services import tools as tool_service
from hub.services.etags import check_if_match

PREFIX = "group:"


def expand(names: list[str]) -> list[str]:
    """``names`` with each ``group:<name>`` replaced by its group's tools, each name once, in
    order; a group that does not exist stands for nothing."""
    found: dict[str, None] = {}
    for name in names:
        if name.startswith(PREFIX):
            group = db_tools.get_group(name[len(PREFIX) :])
            found.update(dict.fromkeys(group.tools if group else []))
        else:
            found[name] = None
    return list(found)


def _check_tools(tools: list[str]) -> list[str]:
    errors = []
    for index, name in enumerate(tools):  # names only: the contract refuses "group:…" here
        if tool_service.resolve(name) is None:
            errors.append({"field": f"body.tools[{index}]", "message": f"no tool named {name!r}"})
    if errors:
        raise Unprocessable(
            "Every entry of tools must name an existing tool.", code="unknown_tool", errors=errors
        )
    return list(tools)


def create(body: dict, *, source: str = "api") -> ToolGroup:
    """``source``: ``plugin:<id>`` for a group a plugin brings."""
    tools = _check_tools(body["tools"])
    now = utcnow()
    try:
        with write_transaction():
            group = ToolGroup.create(
                name=body["name"],
                description=body.get("description") or "",
                tools=tools,
                source=source,
                created_at=now,
                updated_at=now,
            )
            _written("tool_group.created", group)
            audit.created("tool-groups", group.name)
    except peewee.IntegrityError:
        raise Conflict(
            f"A tool group named {body['name']!r} exists.", code="tool_group_exists"
        ) from None
    return group


def update(name: str, body: dict, *, if_match: str | None) -> ToolGroup:
    """Replace the description and tools; a body equal to what is stored changes nothing."""
    tools = _check_tools(body["tools"])
    description = body.get("description") or ""
    with write_transaction():
        group = require(db_tools.get_group(name), "tool_group", name)
        check_if_match(if_match, group.etag)
        if group.tools == tools and group.description == description:
            return group
        group.tools, group.description = tools, description
        group.version += 1
        group.updated_at = utcnow()
        group.save()
        _written("tool_group.updated", group)
    return group


def delete(name: str) -> None:
    with write_transaction():
        group = require(db_tools.get_group(name), "tool_group", name)
        users = agents_listing(name)
        if users:
            raise Conflict(
                f"Agents list the tool group {name!r}: {', '.join(users)}.",
                code="tool_group_in_use",
            )
        group.delete_instance()
        events.emit("tool_group.deleted", subject=name, payload={"name": name})


def agents_listing(name: str) -> list[str]:
    entry = PREFIX + name
    candidates = Agent.select(Agent.id, Agent.tools).where(
        Agent.tools.cast("TEXT").contains(f'"{entry}"')
    )
    return sorted(agent.id for agent in candidates if entry in (agent.tools or []))


def _written(kind: str, group: ToolGroup) -> None:
    events.emit(kind, subject=group.name, payload={"name": group.name, "tools": group.tools})
