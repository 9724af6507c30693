"""Memory writes, search and recall.

Who may own a memory follows its scope: ``session`` needs ``session_id``, ``agent`` needs
``agent_id``, ``project`` needs ``project_id``, ``global`` takes none of them (422 naming the
field otherwise). Expired memories are invisible at once (every read filters on
``expires_at``) and the heartbeat's sweeper deletes them.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque

import peewee

from db import memories
from db.base import utcnow, write_transaction
from db.memories import Memory, MemoryLink
from hub.core.problems import Conflict, NotFound, Unprocessable, require
from hub.events import log as events
from hub.llm import embeddings
from hub.services import audit
from hub.services.etags import check_if_match

OWNER = {"session": "session_id", "agent": "agent_id", "project": "project_id"}
OWNERS = ("agent_id", "project_id", "session_id")


class _Recall:
    """Searches served by this process and their latency (the last 1,000)."""

    def __init__(self) -> None:
        self.count = 0
        self.latencies: deque[float] = deque(maxlen=1000)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self.count += 1
            self.latencies.append(ms)

    def percentiles(self) -> dict:
        with self._lock:
            ordered = sorted(self.latencies)
        if not ordered:
            return {"p50": None, "p95": None}

        def at(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

        return {"p50": at(0.50), "p95": at(0.95)}


RECALL = _Recall()


def _check_owners(body: dict) -> None:
    scope = body["scope"]
    needed = OWNER.get(scope)
    errors = []
    if needed and not body.get(needed):
        errors.append({"field": f"body.{needed}", "message": f"required for scope {scope!r}"})
    if scope == "global":
        errors += [
            {"field": f"body.{name}", "message": "a global memory has no owner"}
            for name in OWNERS
            if body.get(name)
        ]
    if errors:
        raise Unprocessable(
            f"These owners do not fit scope {scope!r}.", code="invalid_scope", errors=errors
        )


def _fields(body: dict, now: dt.datetime) -> dict:
    ttl = body.get("ttl_seconds")
    fields = {
        "content": body["content"],
        "scope": body["scope"],
        "agent_id": body.get("agent_id"),
        "project_id": body.get("project_id"),
        "session_id": body.get("session_id"),
        "tags": body.get("tags") or [],
        "expires_at": now + dt.timedelta(seconds=ttl) if ttl else None,
    }
    if embeddings.available():
        # The model reads 256 word pieces at most: the start of a long text is its embedding.
        fields["embedding"] = embeddings.embed([body["content"][:2000]])[0]
    return fields


def create(body: dict) -> Memory:
    _check_owners(body)
    now = utcnow()
    fields = _fields(body, now)
    with write_transaction():
        stale = Memory.get_or_none(Memory.key == body["key"])
        if stale is not None and stale.expires_at is not None and stale.expires_at <= now:
            _delete(stale)  # an expired memory's key is free again
        try:
            with write_transaction():
                memory = Memory.create(key=body["key"], created_at=now, updated_at=now, **fields)
                _written("memory.created", memory)
                audit.created("memories", memory.key)
                return memory
        except peewee.IntegrityError:
            raise Conflict(
                f"A memory with key {body['key']!r} exists.", code="memory_exists"
            ) from None


def update(key: str, body: dict, *, if_match: str | None) -> Memory:
    _check_owners(body)
    now = utcnow()
    fields = _fields(body, now)
    with write_transaction():
        memory = require(memories.get(key, now), "memory", key)
        check_if_match(if_match, memory.etag)
        for name, value in fields.items():
            setattr(memory, name, value)
        memory.version += 1
        memory.updated_at = now
        memory.save()
        _written("memory.updated", memory)
    return memory


def _written(kind: str, memory: Memory) -> None:
    events.emit(
        kind,
        subject=memory.key,
        payload={
            "key": memory.key,
            "scope": memory.scope,
            "agent_id": memory.agent_id,
            "project_id": memory.project_id,
            "session_id": memory.session_id,
            "version": memory.version,
        },
    )


def _delete(memory: Memory) -> None:
    MemoryLink.delete().where(
        (MemoryLink.source == memory.key) | (MemoryLink.target == memory.key)
    ).execute()
    memory.delete_instance()


def delete(key: str) -> None:
    with write_transaction():
        _delete(require(memories.get(key, utcnow()), "memory", key))
        events.emit("memory.deleted", subject=key, payload={"key": key})


def sweep(limit: int = 1000) -> int:
    """Delete expired memories (and their links); returns how many."""
    now = utcnow()
    with write_transaction():
        expired = list(
            Memory.select()
            .where(Memory.expires_at.is_null(False) & (Memory.expires_at <= now))
            .limit(limit)
        )
        for memory in expired:
            _delete(memory)
    return len(expired)


def link(key: str, target: str, relation: str, weight: float) -> MemoryLink:
    now = utcnow()
    with write_transaction():
        require(memories.get(key, now), "memory", key)
        if memories.get(target, now) is None:
            raise Unprocessable(
                f"No memory with key {target!r}.",
                code="memory_not_found",
                errors=[{"field": "body.target", "message": "no such memory"}],
            )
        if target == key:
            raise Unprocessable(
                "A memory cannot link to itself.",
                code="self_link",
                errors=[{"field": "body.target", "message": "same as the source"}],
            )
        try:
            with write_transaction():
                created = MemoryLink.create(
                    source=key, target=target, relation=relation, weight=weight, created_at=now
                )
        except peewee.IntegrityError:
            raise Conflict(
                f"{key!r} is already linked to {target!r} as {relation!r}.", code="link_exists"
            ) from None
        audit.created("memories", f"{key}/links/{created.id}")
        return created


def get_link(key: str, link_id: int) -> MemoryLink:
    """One link of a live memory, in either direction."""
    get(key)
    link = memories.get_link(key, link_id)
    if link is None:
        raise NotFound(f"Memory {key!r} has no link {link_id}.", code="link_not_found")
    return link


# --- search ------------------------------------------------------------------------------


def search(body: dict) -> dict:
    started = time.perf_counter()
    mode = body.get("mode") or "keyword"
    limit = body.get("limit") or 10
    filters = {k: body.get(k) for k in ("scope", "agent_id", "project_id", "session_id", "tags")}
    if mode != "keyword" and not embeddings.available():
        raise Unprocessable(embeddings.MISSING_HINT, code="semantic_unavailable")
    now = utcnow()
    words = memories.words(body["query"])
    if mode == "keyword" and not words:
        raise Unprocessable(
            "The query has no words to search for.",
            code="empty_query",
            errors=[{"field": "body.query", "message": "no letters or digits"}],
        )
    if mode == "keyword":
        hits = memories.keyword_search(words, now, filters, limit)
    else:
        hits = _semantic(body["query"], words, now, filters, limit, hybrid=mode == "hybrid")
    RECALL.add((time.perf_counter() - started) * 1000)
    return {
        "mode": mode,
        "items": [
            {
                "key": m.key,
                "content": m.content,
                **m.owners(),
                "score": round(score, 6),
                "snippet": snippet,
            }
            for m, score, snippet in hits
        ],
    }


def _semantic(query, words, now, filters, limit, *, hybrid: bool) -> list[tuple]:
    candidates = memories.memories(now, **filters).where(Memory.embedding.is_null(False))
    rows = {m.key: m for m in candidates}
    vector = embeddings.embed([query])[0]
    ranked = embeddings.rank(vector, [(k, m.embedding) for k, m in rows.items()], len(rows))
    if not hybrid:
        return [(rows[k], score, _plain_snippet(rows[k].content)) for k, score in ranked[:limit]]
    keyword = memories.keyword_search(words, now, filters, max(limit * 5, 50)) if words else []
    snippets = {m.key: snippet for m, _, snippet in keyword}
    found = {**{m.key: m for m, _, _ in keyword}, **rows}
    fused = embeddings.reciprocal_rank_fusion(
        [[m.key for m, _, _ in keyword], [k for k, _ in ranked[: max(limit * 5, 50)]]]
    )
    return [
        (found[k], score, snippets.get(k) or _plain_snippet(found[k].content))
        for k, score in fused[:limit]
    ]


def _plain_snippet(content: str, length: int = 200) -> str:
    return content if len(content) <= length else content[: length - 1] + "…"


def stats() -> dict:
    counts = memories.counts_by_scope(utcnow())
    return {
        "total": sum(counts.values()),
        "by_scope": counts,
        "searches": RECALL.count,
        "recall_latency_ms": RECALL.percentiles(),
    }


def graph(scope: str | None, agent_id: str | None, limit: int) -> dict:
    now = utcnow()
    nodes = list(
        memories.memories(now, scope=scope, agent_id=agent_id)
        .order_by(Memory.seq.desc())
        .limit(limit)
    )
    keys = {m.key for m in nodes}
    edges = (
        MemoryLink.select()
        .where(MemoryLink.source.in_(keys) & MemoryLink.target.in_(keys))
        .order_by(MemoryLink.id)
        if keys
        else []
    )
    return {
        "nodes": [
            {"key": m.key, "scope": m.scope, "agent_id": m.agent_id, "tags": m.tags} for m in nodes
        ],
        "edges": [
            {"source": e.source, "target": e.target, "relation": e.relation, "weight": e.weight}
            for e in edges
        ],
    }


def get(key: str) -> Memory:
    memory = memories.get(key, utcnow())
    if memory is None:
        raise NotFound(f"No memory with key {key!r}.", code="memory_not_found")
    return memory


# --- memory in agents --------------------------------------------------------------------


def recall(
    agent, text: str, *, session_id: str | None = None, project_id: str | None = None
) -> list[Memory]:
    """The agent's ``top_k`` memories most relevant to ``text``, from the scopes its
    ``memory`` setting names: its own (``agent``), the session's, the project's, global."""
    config = agent.memory or {}
    if not config.get("enabled"):
        return []
    words = memories.words(text)
    if not words:
        return []
    started = time.perf_counter()
    now, top_k = utcnow(), config.get("top_k", 5)
    owners = {"agent": agent.id, "session": session_id, "project": project_id, "global": True}
    hits: list[tuple] = []
    for scope in config.get("scopes") or ("agent", "session"):
        owner = owners.get(scope)
        if not owner:
            continue
        filters = {"scope": scope}
        if scope in OWNER:
            filters[OWNER[scope]] = owner
        hits += memories.keyword_search(words, now, filters, top_k)
    hits.sort(key=lambda hit: -hit[1])
    RECALL.add((time.perf_counter() - started) * 1000)
    return [memory for memory, _, _ in hits[:top_k]]


def recall_text(found: list[Memory]) -> str:
    """The system message that hands recalled memories to the model."""
    lines = [f"- [{m.key}] {m.content}" for m in found]
    return "Memories that may help (recalled for this message):\n" + "\n".join(lines)
