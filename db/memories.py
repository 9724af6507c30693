"""Memories: scoped notes agents recall, their links, and full-text search over them.

Search is the database's own full-text engine: on SQLite an FTS5 table (``memory_fts``, kept
in step with ``memory`` by triggers) ranked with bm25; on PostgreSQL a stored generated column
``tsv = to_tsvector('english', content || ' ' || tags)`` with a GIN index, ranked with
``ts_rank`` (the column is the migration's: the model leaves it to the database). A user's
query is reduced to its words (``word*`` keeps a prefix) before it reaches either engine, so
no input can be a syntax error.
"""

from __future__ import annotations

import datetime as dt
import re

import peewee

from db.base import BaseModel, JSONField, Versioned, database, is_postgres, iso

SCOPES = ("session", "agent", "project", "global")
_WORD = re.compile(r"\w+\*?", re.UNICODE)


class Memory(Versioned, BaseModel):
    seq = peewee.BigAutoField()
    key = peewee.CharField(max_length=200, unique=True)
    content = peewee.TextField()
    scope = peewee.CharField(max_length=16, index=True)
    agent_id = peewee.CharField(max_length=64, null=True, index=True)
    project_id = peewee.CharField(max_length=64, null=True, index=True)
    session_id = peewee.CharField(max_length=64, null=True, index=True)
    tags = JSONField(default=list)
    expires_at = peewee.DateTimeField(null=True, index=True)
    embedding = JSONField(null=True)
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    def owners(self) -> dict:
        return {
            "scope": self.scope,
            "agent_id": self.agent_id,
            "project_id": self.project_id,
            "session_id": self.session_id,
            "tags": self.tags,
        }

    def to_api(self) -> dict:
        return {
            "key": self.key,
            "content": self.content,
            **self.owners(),
            "expires_at": iso(self.expires_at),
            "version": self.version,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class MemoryLink(BaseModel):
    id = peewee.BigAutoField()
    source = peewee.CharField(max_length=200, index=True)
    target = peewee.CharField(max_length=200, index=True)
    relation = peewee.CharField(max_length=64)
    weight = peewee.FloatField()
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "memory_link"
        indexes = ((("source", "target", "relation"), True),)

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            "target": self.target,
            "relation": self.relation,
            "weight": self.weight,
            "created_at": iso(self.created_at),
        }


def alive(now: dt.datetime):
    return Memory.expires_at.is_null() | (Memory.expires_at > now)


def get(key: str, now: dt.datetime) -> Memory | None:
    return Memory.select().where((Memory.key == key) & alive(now)).first()


def memories(
    now: dt.datetime,
    *,
    scope: str | None = None,
    agent_id: str | None = None,
    project_id: str | None = None,
    session_id: str | None = None,
    tags: list[str] | None = None,
) -> peewee.Select:
    query = Memory.select().where(alive(now))
    for field, value in (
        (Memory.scope, scope),
        (Memory.agent_id, agent_id),
        (Memory.project_id, project_id),
        (Memory.session_id, session_id),
    ):
        if value:
            query = query.where(field == value)
    for tag in tags or ():
        query = query.where(Memory.tags.cast("TEXT").contains(f'"{tag}"'))
    return query


def links(key: str) -> peewee.Select:
    return MemoryLink.select().where((MemoryLink.source == key) | (MemoryLink.target == key))


def get_link(key: str, link_id: int) -> MemoryLink | None:
    """The link ``link_id`` when ``key`` is its source or its target."""
    return links(key).where(MemoryLink.id == link_id).first()


def counts_by_scope(now: dt.datetime) -> dict[str, int]:
    rows = (
        Memory.select(Memory.scope, peewee.fn.COUNT(Memory.seq))
        .where(alive(now))
        .group_by(Memory.scope)
        .tuples()
    )
    counts = dict.fromkeys(SCOPES, 0)
    counts.update(dict(rows))
    return counts


# --- full-text search --------------------------------------------------------------------


def words(query: str) -> list[str]:
    """The searchable words of a user's query (``word*`` kept as a prefix)."""
    return [w for w in _WORD.findall(query) if w.rstrip("*")][:32]


def _filters(now: dt.datetime, filters: dict, mark: str) -> tuple[list[str], list]:
    """SQL conditions over ``m`` (the memory table) for the search filters."""
    conditions = [f"(m.expires_at IS NULL OR m.expires_at > {mark})"]
    params: list = [now]
    for name in ("scope", "agent_id", "project_id", "session_id"):
        if filters.get(name):
            conditions.append(f"m.{name} = {mark}")
            params.append(filters[name])
    for tag in filters.get("tags") or ():
        conditions.append(f"m.tags LIKE {mark}")
        params.append(f'%"{tag}"%')
    return conditions, params


# Every column but the embedding, which search never needs (a 384-float JSON array per row).
_COLUMNS = [f.column_name for f in Memory._meta.sorted_fields if f.name != "embedding"]
_SELECT = ", ".join(f"m.{c}" for c in _COLUMNS)


def _row_to_memory(row) -> Memory:
    fields = Memory._meta.columns
    return Memory(**{c: fields[c].python_value(v) for c, v in zip(_COLUMNS, row, strict=True)})


def _engine_query(terms: str, conditions: list[str], limit: int) -> str:
    where = " AND ".join(conditions)
    if is_postgres():
        return (
            f"SELECT {_SELECT}, ts_rank(m.tsv, q) AS score FROM memory m, "
            f"to_tsquery('english', %s) q WHERE m.tsv @@ q AND {where} "
            "ORDER BY score DESC, m.seq DESC LIMIT %s"
        )
    return (
        f"SELECT {_SELECT}, -bm25(memory_fts) AS score FROM memory_fts "
        f"JOIN memory m ON m.seq = memory_fts.rowid WHERE memory_fts MATCH ? AND {where} "
        "ORDER BY score DESC, m.seq DESC LIMIT ?"
    )


def _terms(query_words: list[str], joiner: str) -> str:
    if is_postgres():
        parts = [f"{w[:-1]}:*" if w.endswith("*") else w for w in query_words]
        return f" {joiner} ".join(parts)
    parts = [f'"{w[:-1]}"*' if w.endswith("*") else f'"{w}"' for w in query_words]
    return f" {joiner} ".join(parts)


def _snippets(terms: str, seqs: list[int]) -> dict[int, str]:
    """Highlighted passages for the few rows returned (computed for them only)."""
    marks = ", ".join(["%s" if is_postgres() else "?"] * len(seqs))
    if is_postgres():
        sql = (
            "SELECT m.seq, ts_headline('english', m.content, to_tsquery('english', %s), "
            "'StartSel=<mark>, StopSel=</mark>, MaxWords=35, MinWords=12, MaxFragments=1') "
            f"FROM memory m WHERE m.seq IN ({marks})"
        )
    else:
        sql = (
            "SELECT rowid, snippet(memory_fts, 0, '<mark>', '</mark>', '…', 24) FROM memory_fts "
            f"WHERE memory_fts MATCH ? AND rowid IN ({marks})"
        )
    return dict(database.execute_sql(sql, [terms, *seqs]).fetchall())


def keyword_search(
    query_words: list[str], now: dt.datetime, filters: dict, limit: int
) -> list[tuple]:
    """``(memory, score, snippet)``, best first: the memories holding every word, ranked;
    then, when they are fewer than ``limit``, those holding some of the words, ranked.

    Matching every word first keeps the ranked set small (a query of common words would
    otherwise rank a large share of the corpus); the second pass keeps recall."""
    mark = "%s" if is_postgres() else "?"
    conditions, params = _filters(now, filters, mark)
    found: list[tuple] = []
    seen: set[int] = set()
    passes = [" & " if is_postgres() else " AND "]
    if len(query_words) > 1:
        passes.append(" | " if is_postgres() else " OR ")
    for joiner in passes:
        terms = _terms(query_words, joiner.strip())
        sql = _engine_query(terms, conditions, limit)
        for row in database.execute_sql(sql, [terms, *params, limit]).fetchall():
            memory = _row_to_memory(row[:-1])
            if memory.seq not in seen:
                seen.add(memory.seq)
                found.append((memory, float(row[-1]), terms))
        if len(found) >= limit:
            break
    found = found[:limit]
    snippets: dict[int, str] = {}
    for terms in {t for _, _, t in found}:
        snippets.update(_snippets(terms, [m.seq for m, _, t in found if t == terms]))
    return [(m, score, snippets.get(m.seq, m.content[:200])) for m, score, _ in found]
