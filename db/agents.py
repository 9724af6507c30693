"""Agents and their configuration history."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, Prepared, Versioned, iso

# Fields whose change makes a new configuration version.
CONFIG_FIELDS = (
    "name",
    "description",
    "role",
    "model",
    "system_prompt",
    "temperature",
    "max_tokens",
    "max_steps",
    "tools",
    "skills",
    "capabilities",
    "memory",
)


class Agent(Versioned, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=64)
    name = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    role = peewee.TextField(default="")
    model = peewee.CharField(max_length=200)
    system_prompt = peewee.TextField(default="")
    temperature = peewee.FloatField(null=True)
    max_tokens = peewee.IntegerField(null=True)
    max_steps = peewee.IntegerField(default=10)
    tools = JSONField(default=list)
    skills = JSONField(default=list)
    capabilities = JSONField(default=list)
    memory = JSONField(default=dict)
    status = peewee.CharField(max_length=16, index=True)
    config_version = peewee.IntegerField()
    version = peewee.IntegerField()
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    def config(self) -> dict:
        return {name: getattr(self, name) for name in CONFIG_FIELDS}

    def to_api(self) -> dict:
        return {
            "id": self.id,
            **self.config(),
            "status": self.status,
            "config_version": self.config_version,
            "version": self.version,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class AgentVersion(BaseModel):
    id = peewee.BigAutoField()
    agent_id = peewee.CharField(max_length=64, index=True)
    number = peewee.IntegerField()
    config = JSONField()
    created_at = peewee.DateTimeField()
    created_by = peewee.CharField(max_length=40, null=True)

    class Meta:
        indexes = ((("agent_id", "number"), True),)

    def to_api(self, active: int) -> dict:
        return {
            "version": self.number,
            "active": self.number == active,
            "config": self.config,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
        }


_by_id = Prepared(Agent, lambda agent_id: Agent.select().where(Agent.id == agent_id))


def get(agent_id: str) -> Agent | None:
    return _by_id.first(agent_id)


def listing(*, status: str | None = None, capability: str | None = None) -> peewee.Select:
    query = Agent.select()
    if status:
        query = query.where(Agent.status == status)
    if capability:
        # capabilities is a JSON array of slugs stored as text: match the quoted element.
        # (Cast to text so the needle is not JSON-encoded again as a field value.)
        query = query.where(Agent.capabilities.cast("TEXT").contains(f'"{capability}"'))
    return query


def versions(agent_id: str) -> peewee.Select:
    return AgentVersion.select().where(AgentVersion.agent_id == agent_id)


def version(agent_id: str, number: int) -> AgentVersion | None:
    return (
        AgentVersion.select()
        .where((AgentVersion.agent_id == agent_id) & (AgentVersion.number == number))
        .first()
    )


def latest_version_number(agent_id: str) -> int:
    value = (
        AgentVersion.select(peewee.fn.MAX(AgentVersion.number))
        .where(AgentVersion.agent_id == agent_id)
        .scalar()
    )
    return int(value or 0)


def previous_version(agent_id: str, before: int) -> AgentVersion | None:
    return (
        AgentVersion.select()
        .where((AgentVersion.agent_id == agent_id) & (AgentVersion.number < before))
        .order_by(AgentVersion.number.desc())
        .first()
    )
