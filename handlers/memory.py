"""Memories: scoped store, ranked search, expiry, links and graph."""

from __future__ import annotations

from db import memories
from db.base import utcnow
from db.memories import Memory, MemoryLink
from db.pagination import list_page
from generated.models import MemoryCreate, MemoryLinkCreate, MemoryPut, MemorySearch
from handlers import body_fields
from hub.http import context
from hub.services import memory


def list_memories(
    limit=50, cursor=None, scope=None, agent_id=None, project_id=None, session_id=None, tag=None
):
    """List memories, newest first (expired ones never show)."""
    query = memories.memories(
        utcnow(),
        scope=scope,
        agent_id=agent_id,
        project_id=project_id,
        session_id=session_id,
        tags=[tag] if tag else None,
    )
    return list_page(query, Memory.seq, limit=limit, cursor=cursor, descending=True), 200


def create_memory(body):
    """Store a memory under a key of the client's choosing."""
    created = memory.create(body_fields(MemoryCreate, body))
    headers = {"Location": f"/api/v1/memories/{created.key}", "ETag": created.etag}
    return created.to_api(), 201, headers


def search_memories(body):
    """Ranked search over the memories, best first, with highlighted snippets."""
    return memory.search(body_fields(MemorySearch, body)), 200


def get_memory_stats():
    """Counts by scope, searches served and recall latency."""
    return memory.stats(), 200


def get_memory_graph(scope=None, agent_id=None, limit=500):
    """Memories as nodes and their links as weighted edges."""
    return memory.graph(scope, agent_id, limit), 200


def get_memory(key):
    """One memory."""
    found = memory.get(key)
    return found.to_api(), 200, {"ETag": found.etag}


def update_memory(key, body):
    """Replace a memory's content, tags, owners or expiry."""
    updated = memory.update(key, body_fields(MemoryPut, body), if_match=context.header("If-Match"))
    return updated.to_api(), 200, {"ETag": updated.etag}


def delete_memory(key):
    """Delete a memory and its links."""
    memory.delete(key)
    return None, 204


def list_memory_links(key, limit=50, cursor=None):
    """A memory's links, both directions."""
    memory.get(key)
    return list_page(memories.links(key), MemoryLink.id, limit=limit, cursor=cursor), 200


def link_memory(key, body):
    """Relate this memory to another."""
    fields = body_fields(MemoryLinkCreate, body)
    created = memory.link(
        key, fields["target"], fields.get("relation", "related"), fields.get("weight", 1.0)
    )
    return created.to_api(), 201, {"Location": f"/api/v1/memories/{key}/links/{created.id}"}


def get_memory_link(key, link_id):
    """One of a memory's links."""
    return memory.get_link(key, link_id).to_api(), 200
