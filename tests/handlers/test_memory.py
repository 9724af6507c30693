"""Memories: the store, scope rules, expiry, ranked keyword search, links, graph, stats."""

from __future__ import annotations

import pytest

from hub.services import memory
from tests.assertions import assert_problem, error_fields
from tests.llm.test_embeddings import requires_semantic

URL = "/api/v1/memories"
NOW = "2026-01-01T12:00:00.000Z"


def store(client, key: str, content: str, scope: str = "global", **fields) -> dict:
    response = client.post(URL, json={"key": key, "content": content, "scope": scope, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def search(client, query: str, **fields) -> list[dict]:
    response = client.post(f"{URL}/search", json={"query": query, **fields})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_create_answers_the_whole_memory(client, clock):
    response = client.post(
        URL,
        json={
            "key": "pref.coffee",
            "content": "Ada takes her coffee black.",
            "scope": "agent",
            "agent_id": "barista",
            "tags": ["preferences"],
            "ttl_seconds": 3600,
        },
    )

    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{URL}/pref.coffee"
    assert response.headers["etag"] == '"1"'
    assert response.json() == {
        "key": "pref.coffee",
        "content": "Ada takes her coffee black.",
        "scope": "agent",
        "agent_id": "barista",
        "project_id": None,
        "session_id": None,
        "tags": ["preferences"],
        "expires_at": "2026-01-01T13:00:00.000Z",
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
    }
    assert client.get(f"{URL}/pref.coffee").json() == response.json()


def test_a_duplicate_key_is_409(client):
    store(client, "k1", "first")
    response = client.post(URL, json={"key": "k1", "content": "again", "scope": "global"})
    assert_problem(response, 409, "memory_exists")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"scope": "session"}, {"body.session_id"}),
        ({"scope": "agent"}, {"body.agent_id"}),
        ({"scope": "project"}, {"body.project_id"}),
        (
            {"scope": "global", "agent_id": "a", "session_id": "ses_1"},
            {"body.agent_id", "body.session_id"},
        ),
    ],
)
def test_owners_must_fit_the_scope(client, body, fields):
    response = client.post(URL, json={"key": "x", "content": "c", **body})
    assert_problem(response, 422, "invalid_scope")
    assert error_fields(response) == fields


def test_put_replaces_with_if_match(client, clock):
    store(client, "k", "old text", tags=["a"])
    clock.advance(minutes=1)

    stale = client.put(
        f"{URL}/k", json={"content": "x", "scope": "global"}, headers={"If-Match": '"9"'}
    )
    response = client.put(
        f"{URL}/k",
        json={"content": "new text", "scope": "project", "project_id": "apollo"},
        headers={"If-Match": '"1"'},
    )

    assert_problem(stale, 412)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content"] == "new text" and body["version"] == 2
    assert body["scope"] == "project" and body["project_id"] == "apollo" and body["tags"] == []
    assert body["updated_at"] == "2026-01-01T12:01:00.000Z" and body["created_at"] == NOW
    assert search(client, "new") and not search(client, "old")


def test_expired_memories_vanish_at_once_and_are_swept(client, clock):
    store(client, "brief", "short lived fact", ttl_seconds=60)
    store(client, "lasting", "long lived fact")
    other = store(client, "other", "unrelated")
    client.post(f"{URL}/brief/links", json={"target": "other"})

    clock.advance(seconds=61)

    assert_problem(client.get(f"{URL}/brief"), 404, "memory_not_found")
    assert [m["key"] for m in client.get(URL).json()["items"]] == ["other", "lasting"]
    assert [hit["key"] for hit in search(client, "fact")] == ["lasting"]
    assert client.get(f"{URL}/stats").json()["by_scope"]["global"] == 2
    assert memory.sweep() == 1
    assert client.get(f"{URL}/other/links").json()["items"] == []
    # its key is free again
    assert store(client, "brief", "back again")["version"] == 1
    assert other["key"] == "other"


def test_delete_is_idempotent_in_effect(client):
    store(client, "gone", "bye")
    store(client, "kept", "hello")
    client.post(f"{URL}/gone/links", json={"target": "kept"})

    assert client.delete(f"{URL}/gone").status_code == 204
    assert_problem(client.delete(f"{URL}/gone"), 404, "memory_not_found")
    assert [m["key"] for m in client.get(URL).json()["items"]] == ["kept"]
    assert client.get(f"{URL}/kept/links").json()["items"] == []


# --- search ------------------------------------------------------------------------------

CORPUS = {
    "solar": "Solar panels convert sunlight into electricity for the house.",
    "solar-cost": "The solar panels cost 8,000 euros; solar subsidies covered a third.",
    "wind": "A wind turbine turns wind into electricity on the hill.",
    "garden": "Tomatoes in the garden need sunlight and water every day.",
    "cat": "The cat sleeps on the warm windowsill.",
}


@pytest.fixture
def corpus(client):
    for key, content in CORPUS.items():
        store(
            client, key, content, tags=["energy"] if key in ("solar", "solar-cost", "wind") else []
        )


def test_keyword_search_ranks_by_relevance(client, corpus):
    hits = search(client, "solar panels")
    # "solar-cost" says solar twice and panels once; "solar" once each; nothing else matches.
    assert [h["key"] for h in hits] == ["solar-cost", "solar"]
    assert hits[0]["score"] > hits[1]["score"] > 0
    assert "<mark>" in hits[0]["snippet"] and "</mark>" in hits[0]["snippet"]
    assert hits[0]["content"] == CORPUS["solar-cost"]


def test_more_matching_words_rank_higher(client, corpus):
    hits = search(client, "electricity sunlight")
    # "solar" has both words; "wind" and "garden" one each.
    assert hits[0]["key"] == "solar"
    assert {h["key"] for h in hits[1:]} == {"wind", "garden"}


def test_search_filters_on_tags_scope_and_owner(client, corpus):
    store(client, "agent-note", "electricity bill is due", scope="agent", agent_id="ops")
    energy = search(client, "electricity", tags=["energy"])
    assert {h["key"] for h in energy} == {"solar", "wind"}
    mine = search(client, "electricity", scope="agent", agent_id="ops")
    assert [h["key"] for h in mine] == ["agent-note"]
    assert search(client, "electricity", agent_id="nobody") == []


def test_a_prefix_star_matches_word_starts(client, corpus):
    assert {h["key"] for h in search(client, "sun*")} == {"solar", "garden"}  # sunlight
    assert search(client, "sun") == []  # without the star, a whole word


@pytest.mark.parametrize(
    "query",
    [
        '"solar',
        "solar-panels",
        "solar) OR (",
        "((( solar",
        "solar'; DROP TABLE memory; --",
        "NEAR(solar panels)",
        "solar AND NOT",
        "☀️ solar 🔋",
        "col:solar",
        "^solar",
    ],
)
def test_typed_query_syntax_is_searched_as_text(client, corpus, query):
    hits = search(client, query)
    assert "solar" in {h["key"] for h in hits}
    assert len(client.get(URL).json()["items"]) == len(CORPUS)  # nothing was executed


@pytest.mark.parametrize("query", ["!!!", "🔋🔋", "***", "--", "((("])
def test_a_query_without_words_is_422(client, query):
    """Schema-valid, but nothing to search for: 422 (as schemathesis' positive-data check
    expects of a request the schema allows), naming the field."""
    response = client.post(f"{URL}/search", json={"query": query})
    assert_problem(response, 422, "empty_query")
    assert error_fields(response) == {"body.query"}


def test_stats_count_scopes_and_searches(client, corpus):
    before = client.get(f"{URL}/stats").json()["searches"]
    search(client, "solar")
    stats = client.get(f"{URL}/stats").json()
    assert stats["total"] == 5
    assert stats["by_scope"] == {"session": 0, "agent": 0, "project": 0, "global": 5}
    assert stats["searches"] == before + 1
    assert stats["recall_latency_ms"]["p50"] >= 0


# --- links and graph ---------------------------------------------------------------------


def test_links_and_graph(client):
    store(client, "a", "alpha", scope="agent", agent_id="x")
    store(client, "b", "beta", scope="agent", agent_id="x")
    store(client, "c", "gamma")

    created = client.post(
        f"{URL}/a/links", json={"target": "b", "relation": "supports", "weight": 0.5}
    )
    client.post(f"{URL}/c/links", json={"target": "a"})

    assert created.status_code == 201
    assert created.json()["relation"] == "supports" and created.json()["weight"] == 0.5
    links = client.get(f"{URL}/a/links").json()["items"]
    assert {(link["source"], link["target"]) for link in links} == {("a", "b"), ("c", "a")}
    again = client.post(f"{URL}/a/links", json={"target": "b", "relation": "supports"})
    assert_problem(again, 409, "link_exists")
    missing = client.post(f"{URL}/a/links", json={"target": "zzz"})
    assert_problem(missing, 422, "memory_not_found")
    assert_problem(client.post(f"{URL}/a/links", json={"target": "a"}), 422, "self_link")

    graph = client.get(f"{URL}/graph").json()
    assert {n["key"] for n in graph["nodes"]} == {"a", "b", "c"}
    assert {(e["source"], e["target"], e["weight"]) for e in graph["edges"]} == {
        ("a", "b", 0.5),
        ("c", "a", 1.0),
    }
    agent_graph = client.get(f"{URL}/graph", params={"agent_id": "x"}).json()
    assert {n["key"] for n in agent_graph["nodes"]} == {"a", "b"}
    assert [(e["source"], e["target"]) for e in agent_graph["edges"]] == [("a", "b")]


def test_a_link_is_located_at_its_own_url_from_either_end(client):
    store(client, "from", "alpha")
    store(client, "to", "beta")
    store(client, "aside", "gamma")

    response = client.post(f"{URL}/from/links", json={"target": "to"})

    assert response.status_code == 201, response.text
    link = response.json()
    assert link == {
        "id": link["id"],
        "source": "from",
        "target": "to",
        "relation": "related",
        "weight": 1.0,
        "created_at": link["created_at"],
    }
    assert response.headers["location"] == f"{URL}/from/links/{link['id']}"
    assert client.get(response.headers["location"]).json() == link
    assert client.get(f"{URL}/to/links/{link['id']}").json() == link  # the other end
    assert_problem(client.get(f"{URL}/aside/links/{link['id']}"), 404, "link_not_found")
    assert_problem(client.get(f"{URL}/nowhere/links/{link['id']}"), 404, "memory_not_found")
    (entry,) = client.get("/api/v1/audit-log", params={"action": "link_memory"}).json()["items"]
    assert entry["resource"] == response.headers["location"]


def test_links_page_oldest_first(client):
    store(client, "hub", "centre")
    for n in range(3):
        store(client, f"spoke-{n}", "spoke")
        client.post(f"{URL}/hub/links", json={"target": f"spoke-{n}"})

    page_1 = client.get(f"{URL}/hub/links", params={"limit": 2}).json()
    page_2 = client.get(
        f"{URL}/hub/links", params={"limit": 2, "cursor": page_1["next_cursor"]}
    ).json()

    assert [link["target"] for link in page_1["items"]] == ["spoke-0", "spoke-1"]
    assert [link["target"] for link in page_2["items"]] == ["spoke-2"]
    assert page_2["next_cursor"] is None
    bad = client.get(f"{URL}/hub/links", params={"cursor": "bm90LW91cnM"})
    assert_problem(bad, 400, "validation_error")


def test_semantic_mode_without_the_extra_says_how_to_enable_it(client, monkeypatch):
    from hub.llm import embeddings

    monkeypatch.setattr(embeddings, "available", lambda: False)
    response = client.post(f"{URL}/search", json={"query": "solar", "mode": "semantic"})
    body = assert_problem(response, 422, "semantic_unavailable")
    assert "pip install -e '.[semantic]'" in body["detail"]


# --- memory in agents --------------------------------------------------------------------


def test_an_agent_with_memory_recalls_into_the_turn(client):
    agent = client.post(
        "/api/v1/agents",
        json={
            "id": "rememberer",
            "name": "R",
            "model": "builtin/echo",
            "system_prompt": "Be useful.",
            "memory": {"enabled": True, "scopes": ["agent", "global"], "top_k": 2},
        },
    ).json()
    store(
        client,
        "fav-colour",
        "Ada's favourite colour is green.",
        scope="agent",
        agent_id=agent["id"],
    )
    store(client, "weather", "It rains a lot in Brest.")
    store(client, "other-agent", "Ada's colour is red.", scope="agent", agent_id="someone-else")
    session = client.post("/api/v1/sessions", json={"agent_id": agent["id"]}).json()

    reply = client.post(
        f"/api/v1/sessions/{session['id']}/messages",
        json={"content": "What is Ada's favourite colour?"},
    ).json()

    turn = reply["turn"]
    assert turn["memories_used"] == ["fav-colour"]
    assert turn["context"][1] == {
        "role": "system",
        "content": "Memories that may help (recalled for this message):\n"
        "- [fav-colour] Ada's favourite colour is green.",
    }


def test_memory_tools_in_the_agent_loop(client):
    from tests.factories import make_agent, make_task, wait_for_task

    agent = make_agent(client, model="builtin/scripted", tools=["memory_store", "memory_search"])
    script = (
        '/tool memory_store {"key": "lesson", "content": "Always check the logs first."}\n'
        '/tool memory_search {"query": "logs", "scope": "agent"}\n'
        "/reply noted"
    )
    task = make_task(client, agent_id=agent["id"], description=script)

    done = wait_for_task(client, task["id"])

    assert done["status"] == "completed", done
    store_step, search_step = [s for s in done["steps"] if s["kind"] == "tool"]
    assert store_step["error"] is None, store_step["error"]
    assert store_step["output"] == {"key": "lesson", "scope": "agent", "version": 1}
    assert [r["key"] for r in search_step["output"]["results"]] == ["lesson"]
    assert client.get(f"{URL}/lesson").json()["agent_id"] == agent["id"]
    audited = client.get("/api/v1/audit-log", params={"action": "memory_store"}).json()["items"]
    assert [(e["actor_name"], e["resource"]) for e in audited] == [
        (f"task:{task['id']}", "/api/v1/memories/lesson")
    ]
    assert client.get("/api/v1/audit-log/verify").json()["valid"] is True


# --- semantic and hybrid (the optional extra) --------------------------------------------

MEANINGS = {
    "kitten": "The kitten naps on the sofa all afternoon.",
    "revenue": "Quarterly revenue grew four percent.",
    "dog": "Dogs bark at the mail carrier.",
}


@requires_semantic
def test_semantic_search_ranks_by_meaning(client):
    for key, content in MEANINGS.items():
        store(client, key, content)

    hits = search(client, "a small cat sleeping", mode="semantic")

    assert hits[0]["key"] == "kitten"  # no word in common, same meaning
    assert hits[0]["score"] > hits[-1]["score"]
    assert {h["key"] for h in hits} == set(MEANINGS)


@requires_semantic
def test_hybrid_search_fuses_keyword_and_semantic_rankings(client):
    for key, content in MEANINGS.items():
        store(client, key, content)
    store(client, "bark-words", "Tree bark is rough.")

    hits = search(client, "dog barking", mode="hybrid")

    # "dog" ranks first in both rankings (keyword "barking" → "bark"; meaning): fused first.
    assert hits[0]["key"] == "dog"
    assert hits[0]["score"] > hits[1]["score"]
