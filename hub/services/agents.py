"""Agent writes: every configuration change is a new version, activated at once."""

from __future__ import annotations

import peewee

from db import agents
from db.agents import CONFIG_FIELDS, Agent, AgentVersion
from db.base import utcnow, write_transaction
from hub.core import spec
from hub.core.problems import Conflict, NotFound, require
from hub.events import log as events
from hub.services import audit
from hub.services.etags import check_if_match

DEFAULTS = {
    "description": "",
    "role": "",
    "system_prompt": "",
    "temperature": None,
    "max_tokens": None,
    "max_steps": 10,
    "tools": [],
    "skills": [],
    "capabilities": [],
    "status": "active",
}
MEMORY_DEFAULTS = {"enabled": False, "scopes": ["agent", "session"], "top_k": 5}

SEED_AGENTS = (
    {
        "id": "assistant",
        "name": "Assistant",
        "description": "A general helper on the built-in offline echo model.",
        "role": "assistant",
        "model": "builtin/echo",
        "system_prompt": "You are a helpful assistant.",
        "capabilities": ["chat"],
    },
    {
        "id": "scripted",
        "name": "Scripted",
        "description": "Follows /tool, /reply, /error and /sleep directives: drives every path "
        "of the hub offline.",
        "role": "tester",
        "model": "builtin/scripted",
        "system_prompt": "Follow the directives in the message.",
        "capabilities": ["testing"],
    },
)


def _add_version(agent: Agent, number: int, actor: str | None) -> None:
    AgentVersion.create(
        agent_id=agent.id,
        number=number,
        config=agent.config(),
        created_at=utcnow(),
        created_by=actor,
    )


def create(body: dict, actor: str | None = None) -> Agent:
    if body["id"] in spec.literal_segments():
        raise Conflict(
            f"{body['id']!r} is reserved: /api/v1/agents/{body['id']} is another operation.",
            code="reserved_id",
        )
    values = {**DEFAULTS, **body}
    values["memory"] = {**MEMORY_DEFAULTS, **(body.get("memory") or {})}
    now = utcnow()
    try:
        with write_transaction():
            agent = Agent.create(
                **values, config_version=1, version=1, created_at=now, updated_at=now
            )
            _add_version(agent, 1, actor)
            audit.created("agents", agent.id)
            events.emit(
                "agent.created",
                subject=agent.id,
                payload={"agent_id": agent.id, "name": agent.name, "status": agent.status},
            )
    except peewee.IntegrityError as exc:
        raise Conflict(
            f"An agent with id {body['id']!r} already exists.", code="agent_exists"
        ) from exc
    return agent


def update(agent_id: str, changes: dict, *, if_match: str | None, actor: str | None) -> Agent:
    """Apply a partial update; config changes make and activate a new version."""
    with write_transaction():
        agent = require(agents.get(agent_id), "agent", agent_id)
        check_if_match(if_match, agent.etag)
        if "memory" in changes:
            changes = {**changes, "memory": {**agent.memory, **(changes["memory"] or {})}}
        config_changed = any(
            name in changes and changes[name] != getattr(agent, name) for name in CONFIG_FIELDS
        )
        status_changed = "status" in changes and changes["status"] != agent.status
        if not (config_changed or status_changed):
            return agent
        for name, value in changes.items():
            setattr(agent, name, value)
        if config_changed:
            agent.config_version = agents.latest_version_number(agent_id) + 1
            _add_version(agent, agent.config_version, actor)
        agent.version += 1
        agent.updated_at = utcnow()
        agent.save()
        _updated(agent, sorted(changes))
    return agent


def _updated(agent: Agent, changed: list[str]) -> None:
    events.emit(
        "agent.updated",
        subject=agent.id,
        payload={
            "agent_id": agent.id,
            "config_version": agent.config_version,
            "status": agent.status,
            "changed": changed,
        },
    )


def _activate(agent: Agent, target: AgentVersion) -> Agent:
    for name in CONFIG_FIELDS:
        if name in target.config:
            setattr(agent, name, target.config[name])
    agent.config_version = target.number
    agent.version += 1
    agent.updated_at = utcnow()
    agent.save()
    _updated(agent, ["config_version"])
    return agent


def promote(agent_id: str, number: int) -> Agent:
    """Make config version ``number`` the active one."""
    with write_transaction():
        agent = require(agents.get(agent_id), "agent", agent_id)
        target = agents.version(agent_id, number)
        if target is None:
            raise NotFound(
                f"Agent {agent_id!r} has no version {number}.", code="agent_version_not_found"
            )
        if agent.config_version == number:
            return agent
        return _activate(agent, target)


def rollback(agent_id: str) -> Agent:
    """Activate the newest version older than the active one."""
    with write_transaction():
        agent = require(agents.get(agent_id), "agent", agent_id)
        target = agents.previous_version(agent_id, agent.config_version)
        if target is None:
            raise Conflict(
                f"Agent {agent_id!r} is on its first version; there is nothing to roll back to.",
                code="no_previous_version",
            )
        return _activate(agent, target)


def clone(agent_id: str, new_id: str, name: str | None, actor: str | None) -> Agent:
    """A new agent with the source's active configuration as its first version."""
    source = require(agents.get(agent_id), "agent", agent_id)
    body = {"id": new_id, **source.config(), "status": source.status}
    if name:
        body["name"] = name
    return create(body, actor)


def delete(agent_id: str) -> None:
    with write_transaction():
        agent = require(agents.get(agent_id), "agent", agent_id)
        AgentVersion.delete().where(AgentVersion.agent_id == agent_id).execute()
        agent.delete_instance()
        events.emit("agent.deleted", subject=agent_id, payload={"agent_id": agent_id})


def seed(actor: str | None = None) -> dict:
    """Create the default agents that do not exist yet; never overwrite."""
    created, skipped = [], []
    for default in SEED_AGENTS:
        if agents.get(default["id"]) is not None:
            skipped.append(default["id"])
            continue
        try:
            create(dict(default), actor)
        except Conflict:
            skipped.append(default["id"])
        else:
            created.append(default["id"])
    return {"created": created, "skipped": skipped}
