"""Agents, their configuration versions, clone and seed."""

from __future__ import annotations

from db import agents
from db.agents import Agent, AgentVersion
from db.pagination import list_page
from generated.models import AgentClone, AgentCreate, AgentUpdate
from handlers import body_fields
from hub.core.problems import require
from hub.http import context
from hub.services import agents as service


def _one(agent: Agent, status: int = 200, *, created: bool = False):
    headers = {"ETag": agent.etag}
    if created:
        headers["Location"] = f"/api/v1/agents/{agent.id}"
    return agent.to_api(), status, headers


def list_agents(limit=50, cursor=None, status=None, capability=None):
    """List agents."""
    query = agents.listing(status=status, capability=capability)
    return list_page(query, Agent.id, limit=limit, cursor=cursor), 200


def create_agent(body):
    """Create an agent."""
    fields = body_fields(AgentCreate, body)
    return _one(service.create(fields, context.actor_id()), 201, created=True)


def seed_agents():
    """Create the default agents that do not exist yet."""
    return service.seed(context.actor_id()), 200


def get_agent(agent_id):
    """One agent with its active configuration."""
    return _one(require(agents.get(agent_id), "agent", agent_id))


def update_agent(agent_id, body):
    """Change an agent; a configuration change makes and activates a new version."""
    changes = body_fields(AgentUpdate, body)
    agent = service.update(
        agent_id, changes, if_match=context.header("If-Match"), actor=context.actor_id()
    )
    return _one(agent)


def delete_agent(agent_id):
    """Delete an agent and its version history."""
    service.delete(agent_id)
    return None, 204


def clone_agent(agent_id, body):
    """Copy an agent's active configuration into a new agent."""
    request = AgentClone.model_validate(body)
    name = request.name.root if request.name else None
    agent = service.clone(agent_id, request.id.root, name, context.actor_id())
    return _one(agent, 201, created=True)


def list_agent_versions(agent_id, limit=50, cursor=None):
    """An agent's configuration history, newest first."""
    agent = require(agents.get(agent_id), "agent", agent_id)
    return list_page(
        agents.versions(agent_id),
        AgentVersion.number,
        limit=limit,
        cursor=cursor,
        descending=True,
        view=lambda row: row.to_api(agent.config_version),
    ), 200


def promote_agent_version(agent_id, version):
    """Make a configuration version the active one."""
    return _one(service.promote(agent_id, version))


def rollback_agent(agent_id):
    """Activate the newest version older than the active one."""
    return _one(service.rollback(agent_id))
