"""Behaviour of the agents operations: CRUD, versions, promote, rollback, clone, seed,
idempotent creates and roles. Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import base64
import json

import pytest

from db.agents import AgentVersion
from tests.assertions import assert_problem, error_fields
from tests.conftest import auth
from tests.factories import agent_body, make_agent

AGENTS = "/api/v1/agents"
NOW = "2026-01-01T12:00:00.000Z"  # the fake clock's start, as the API writes it


# --- helpers -----------------------------------------------------------------------------


def url(agent_id: str, *rest: str | int) -> str:
    return "/".join([AGENTS, agent_id, *(str(part) for part in rest)])


def expected_agent(**fields) -> dict:
    """The whole answer for an agent made from ``fields`` and nothing else, at the fake NOW."""
    body = {
        "description": "",
        "role": "",
        "system_prompt": "",
        "temperature": None,
        "max_tokens": None,
        "max_steps": 10,
        "tools": [],
        "skills": [],
        "capabilities": [],
        "memory": {"enabled": False, "scopes": ["agent", "session"], "top_k": 5},
        "status": "active",
        "config_version": 1,
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
    }
    body.update(fields)
    return body


def config_of(agent: dict) -> dict:
    """The configuration fields of an agent answer (what a version records)."""
    volatile = {"id", "status", "config_version", "version", "created_at", "updated_at"}
    return {name: value for name, value in agent.items() if name not in volatile}


def assert_bad_request(response, field: str) -> dict:
    """A 400 validation problem whose ``errors`` name ``field``."""
    body = assert_problem(response, 400, "validation_error")
    assert field in error_fields(response), body
    return body


def ids(items: list[dict]) -> list[str]:
    return [item["id"] for item in items]


def all_pages(client, path: str, **params) -> list[dict]:
    """Every page of a list, following ``next_cursor`` until it is null."""
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"


def forged_cursor(value) -> str:
    """A cursor in the server's encoding but with a key it never issued."""
    raw = json.dumps({"k": value}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def versions(client, agent_id: str) -> list[dict]:
    response = client.get(url(agent_id, "versions"))
    assert response.status_code == 200, response.text
    return response.json()["items"]


def my_key_id(client) -> str:
    return client.get("/api/v1/auth/me").json()["key_id"]


def agent_count(client) -> int:
    return sum(len(page["items"]) for page in all_pages(client, AGENTS, limit=200))


def with_versions(client, agent_id: str = "multi") -> dict:
    """An agent with three config versions (temperature 0.1, 0.2, 0.3); the third active."""
    make_agent(client, id=agent_id, temperature=0.1)
    client.patch(url(agent_id), json={"temperature": 0.2})
    response = client.patch(url(agent_id), json={"temperature": 0.3})
    assert response.json()["config_version"] == 3
    return response.json()


# --- create ------------------------------------------------------------------------------


def test_create_fills_defaults_and_answers_201_with_location_and_etag(client, clock):
    response = client.post(AGENTS, json={"id": "min", "name": "Min", "model": "builtin/echo"})

    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/v1/agents/min"
    assert response.headers["etag"] == '"1"'
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected_agent(id="min", name="Min", model="builtin/echo")


def test_create_keeps_every_field_given(client, clock):
    body = {
        "id": "full",
        "name": "Full",
        "description": "Knows everything.",
        "role": "researcher",
        "model": "openai/gpt-4o-mini",
        "system_prompt": "Be thorough.",
        "temperature": 0.7,
        "max_tokens": 512,
        "tools": ["http_get", "calc"],
        "skills": ["summarise"],
        "capabilities": ["research", "chat"],
        "memory": {"enabled": True, "scopes": ["project"], "top_k": 12},
        "status": "paused",
    }

    response = client.post(AGENTS, json=body)

    assert response.status_code == 201, response.text
    assert response.json() == expected_agent(**body)


def test_create_merges_partial_memory_with_defaults(client, clock):
    response = client.post(AGENTS, json=agent_body(id="mem", memory={"enabled": True}))

    assert response.status_code == 201, response.text
    assert response.json()["memory"] == {
        "enabled": True,
        "scopes": ["agent", "session"],
        "top_k": 5,
    }


def test_created_agent_is_what_its_location_answers(client):
    created = client.post(AGENTS, json=agent_body(id="here"))

    fetched = client.get(created.headers["location"])

    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert fetched.headers["etag"] == created.headers["etag"]


def test_create_starts_history_with_one_active_version(client, clock):
    agent = make_agent(client, id="hist")

    assert versions(client, "hist") == [
        {
            "version": 1,
            "active": True,
            "config": config_of(agent),
            "created_at": NOW,
            "created_by": my_key_id(client),
        }
    ]


def test_create_with_an_id_that_names_another_operation_is_409(client):
    response = client.post(AGENTS, json=agent_body(id="seed"))

    assert_problem(response, 409, "reserved_id")
    assert client.get(AGENTS).json()["items"] == []


def test_create_duplicate_id_is_409_agent_exists(client):
    original = make_agent(client, id="dup", name="First")

    response = client.post(AGENTS, json=agent_body(id="dup", name="Second"))

    assert_problem(response, 409, "agent_exists")
    assert client.get(url("dup")).json() == original


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": "no-slash"}, "body.model"),
        ({"model": "Upper/model"}, "body.model"),
        ({"temperature": 2.5}, "body.temperature"),
        ({"temperature": -0.1}, "body.temperature"),
        ({"temperature": "hot"}, "body.temperature"),
        ({"max_tokens": 0}, "body.max_tokens"),
        ({"id": "Not A Slug"}, "body.id"),
        ({"name": ""}, "body.name"),
        ({"status": "sleeping"}, "body.status"),
        ({"tools": ["calc", "calc"]}, "body.tools"),
        ({"capabilities": ["Bad Cap"]}, "body.capabilities.0"),
        ({"memory": {"top_k": 0}}, "body.memory.top_k"),
        ({"memory": {"scopes": ["galaxy"]}}, "body.memory.scopes.0"),
        ({"memory": {"forever": True}}, "body.memory.forever"),
        ({"colour": "blue"}, "body.colour"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else value,
)
def test_create_rejects_bad_input_naming_the_field(client, overrides, field):
    response = client.post(AGENTS, json=agent_body(**overrides))

    assert_bad_request(response, field)


@pytest.mark.parametrize("missing", ["id", "name", "model"])
def test_create_without_a_required_field_names_it(client, missing):
    body = agent_body()
    del body[missing]

    response = client.post(AGENTS, json=body)

    assert_bad_request(response, f"body.{missing}")


def test_create_missing_several_required_fields_names_each(client):
    response = client.post(AGENTS, json={"id": "lonely"})

    assert_problem(response, 400, "validation_error")
    assert {"body.name", "body.model"} <= error_fields(response)


def test_create_with_malformed_json_is_400(client):
    response = client.post(
        AGENTS, content=b'{"id": "x",', headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 400, "malformed_json")
    assert error_fields(response) == {"body"}


def test_create_with_a_form_body_is_415(client):
    response = client.post(AGENTS, data={"id": "form"})

    assert_problem(response, 415, "unsupported_media_type")


def test_rejected_create_stores_nothing(client):
    client.post(AGENTS, json=agent_body(id="bad", temperature=9))

    assert_problem(client.get(url("bad")), 404, "agent_not_found")


# --- list --------------------------------------------------------------------------------


def test_list_answers_every_agent_ordered_by_id(client):
    made = [make_agent(client, id=agent_id) for agent_id in ("b", "c", "a")]

    response = client.get(AGENTS)

    assert response.status_code == 200
    assert response.json() == {
        "items": sorted(made, key=lambda agent: agent["id"]),
        "next_cursor": None,
    }


def test_list_is_empty_without_agents(client):
    assert client.get(AGENTS).json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("status", ["active", "paused", "disabled"])
def test_list_filters_by_status(client, status):
    for each in ("active", "paused", "disabled"):
        make_agent(client, id=f"{each}-1", status=each)
        make_agent(client, id=f"{each}-2", status=each)

    items = client.get(AGENTS, params={"status": status}).json()["items"]

    assert ids(items) == [f"{status}-1", f"{status}-2"]
    assert {item["status"] for item in items} == {status}


def test_list_filters_by_capability_as_a_whole_element(client):
    make_agent(client, id="both", capabilities=["chat", "search"])
    make_agent(client, id="search-only", capabilities=["search"])
    make_agent(client, id="none")
    make_agent(client, id="longer", capabilities=["searching", "research"])

    response = client.get(AGENTS, params={"capability": "search"})

    assert ids(response.json()["items"]) == ["both", "search-only"]


def test_list_combines_status_and_capability_filters(client):
    make_agent(client, id="a-chat", capabilities=["chat"])
    make_agent(client, id="p-chat", capabilities=["chat"], status="paused")
    make_agent(client, id="p-code", capabilities=["code"], status="paused")

    response = client.get(AGENTS, params={"status": "paused", "capability": "chat"})

    assert ids(response.json()["items"]) == ["p-chat"]


def test_list_pages_through_every_agent_once(client):
    expected = [f"page-{n:02d}" for n in range(8)]
    for agent_id in reversed(expected):
        make_agent(client, id=agent_id)

    pages = all_pages(client, AGENTS, limit=3)

    assert [len(page["items"]) for page in pages] == [3, 3, 2]
    seen = [agent_id for page in pages for agent_id in ids(page["items"])]
    assert seen == expected
    assert pages[-1]["next_cursor"] is None
    assert all(isinstance(page["next_cursor"], str) for page in pages[:-1])


def test_list_paging_keeps_the_filter(client):
    for n in range(5):
        make_agent(client, id=f"act-{n}")
        make_agent(client, id=f"off-{n}", status="disabled")

    pages = all_pages(client, AGENTS, limit=2, status="disabled")

    seen = [agent_id for page in pages for agent_id in ids(page["items"])]
    assert seen == [f"off-{n}" for n in range(5)]


def test_list_with_an_exactly_full_last_page_ends_there(client):
    for n in range(4):
        make_agent(client, id=f"even-{n}")

    pages = all_pages(client, AGENTS, limit=2)

    assert [len(page["items"]) for page in pages] == [2, 2]
    assert pages[-1]["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "!!!", forged_cursor([1])],
    ids=["not-base64-json", "bad-characters", "list-key"],
)
def test_list_rejects_a_garbage_cursor(client, cursor):
    make_agent(client, id="only")

    response = client.get(AGENTS, params={"cursor": cursor})

    assert_problem(response, 400, "validation_error")


def test_a_garbage_cursor_is_reported_as_query_cursor(client):
    response = client.get(AGENTS, params={"cursor": "not-a-cursor"})

    assert_bad_request(response, "query.cursor")


@pytest.mark.parametrize("limit", [0, 201, "many"])
def test_list_rejects_a_limit_out_of_range(client, limit):
    assert_bad_request(client.get(AGENTS, params={"limit": limit}), "query.limit")


def test_list_rejects_an_unknown_status(client):
    assert_bad_request(client.get(AGENTS, params={"status": "sleeping"}), "query.status")


def test_list_rejects_an_unknown_query_parameter(client):
    assert_bad_request(client.get(AGENTS, params={"colour": "blue"}), "query.colour")


# --- get ---------------------------------------------------------------------------------


def test_get_answers_the_agent_with_its_version_as_etag(client, clock):
    make_agent(client, id="tagged", name="Tagged", model="builtin/echo", system_prompt="Hi.")
    client.patch(url("tagged"), json={"status": "paused"})

    response = client.get(url("tagged"))

    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json() == expected_agent(
        id="tagged",
        name="Tagged",
        model="builtin/echo",
        system_prompt="Hi.",
        status="paused",
        version=2,
    )


def test_get_unknown_agent_is_404(client):
    body = assert_problem(client.get(url("ghost")), 404, "agent_not_found")
    assert "ghost" in body["detail"]


def test_get_with_an_invalid_id_is_400_naming_the_path(client):
    assert_bad_request(client.get(url("Not_A_Slug")), "path.agent_id")


# --- clone -------------------------------------------------------------------------------


def test_clone_copies_the_active_config_under_a_new_id_at_version_1(client, clock):
    make_agent(client, id="src", capabilities=["chat"], temperature=0.3)
    source = client.patch(url("src"), json={"status": "paused", "max_tokens": 99}).json()

    response = client.post(url("src", "clone"), json={"id": "copy"})

    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/v1/agents/copy"
    assert response.headers["etag"] == '"1"'
    assert response.json() == {**source, "id": "copy", "config_version": 1, "version": 1}
    assert [item["version"] for item in versions(client, "copy")] == [1]


def test_clone_can_take_a_new_name(client):
    make_agent(client, id="src", name="Source")

    response = client.post(url("src", "clone"), json={"id": "copy", "name": "Copy"})

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Copy"


def test_clone_copies_the_promoted_version_not_the_latest(client):
    with_versions(client, "src")
    client.post(url("src", "versions", 1, "promote"))

    clone = client.post(url("src", "clone"), json={"id": "copy"}).json()

    assert clone["temperature"] == 0.1


def test_clone_leaves_the_source_untouched(client):
    source = make_agent(client, id="src")

    client.post(url("src", "clone"), json={"id": "copy", "name": "Other"})

    assert client.get(url("src")).json() == source
    assert len(versions(client, "src")) == 1


def test_clone_to_an_existing_id_is_409(client):
    make_agent(client, id="src")
    taken = make_agent(client, id="taken", name="Taken")

    response = client.post(url("src", "clone"), json={"id": "taken"})

    assert_problem(response, 409, "agent_exists")
    assert client.get(url("taken")).json() == taken


def test_clone_of_an_unknown_agent_is_404(client):
    response = client.post(url("ghost", "clone"), json={"id": "copy"})

    assert_problem(response, 404, "agent_not_found")
    assert client.get(url("copy")).status_code == 404


def test_clone_without_an_id_is_400(client):
    make_agent(client, id="src")

    assert_bad_request(client.post(url("src", "clone"), json={"name": "x"}), "body.id")


# --- delete ------------------------------------------------------------------------------


def test_delete_answers_204_then_the_agent_is_gone(client):
    make_agent(client, id="doomed")

    response = client.delete(url("doomed"))

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(url("doomed")), 404, "agent_not_found")
    assert "doomed" not in ids(client.get(AGENTS).json()["items"])


def test_the_204_answer_is_not_labelled_a_problem(client):
    make_agent(client, id="doomed")

    response = client.delete(url("doomed"))

    assert response.status_code == 204
    assert response.headers.get("content-type") != "application/problem+json"


def test_delete_removes_the_version_history(client):
    with_versions(client, "doomed")
    make_agent(client, id="kept")

    client.delete(url("doomed"))

    assert_problem(client.get(url("doomed", "versions")), 404, "agent_not_found")
    assert AgentVersion.select().where(AgentVersion.agent_id == "doomed").count() == 0
    assert AgentVersion.select().where(AgentVersion.agent_id == "kept").count() == 1


def test_an_agent_made_again_after_delete_starts_a_fresh_history(client):
    with_versions(client, "phoenix")
    client.delete(url("phoenix"))

    agent = make_agent(client, id="phoenix")

    assert (agent["version"], agent["config_version"]) == (1, 1)
    assert [item["version"] for item in versions(client, "phoenix")] == [1]


def test_delete_unknown_agent_is_404(client):
    assert_problem(client.delete(url("ghost")), 404, "agent_not_found")


# --- seed --------------------------------------------------------------------------------


def test_seed_creates_the_default_agents_the_first_time(client):
    response = client.post(f"{AGENTS}/seed")

    assert response.status_code == 200, response.text
    assert response.json() == {"created": ["assistant", "scripted"], "skipped": []}
    listed = client.get(AGENTS).json()["items"]
    assert ids(listed) == ["assistant", "scripted"]
    assert {(a["model"], a["status"], a["version"]) for a in listed} == {
        ("builtin/echo", "active", 1),
        ("builtin/scripted", "active", 1),
    }


def test_seed_again_skips_every_default(client):
    client.post(f"{AGENTS}/seed")
    before = client.get(AGENTS).json()

    response = client.post(f"{AGENTS}/seed")

    assert response.status_code == 200
    assert response.json() == {"created": [], "skipped": ["assistant", "scripted"]}
    assert client.get(AGENTS).json() == before


def test_seed_never_overwrites_an_edited_default(client):
    client.post(f"{AGENTS}/seed")
    edited = client.patch(
        url("assistant"), json={"name": "Mine", "system_prompt": "Only mine."}
    ).json()

    response = client.post(f"{AGENTS}/seed")

    assert response.json() == {"created": [], "skipped": ["assistant", "scripted"]}
    assert client.get(url("assistant")).json() == edited


def test_seed_creates_only_the_missing_default(client):
    client.post(f"{AGENTS}/seed")
    client.delete(url("scripted"))

    response = client.post(f"{AGENTS}/seed")

    assert response.json() == {"created": ["scripted"], "skipped": ["assistant"]}


def test_seed_skips_a_user_agent_that_took_a_default_id(client):
    mine = make_agent(client, id="assistant", name="Not the default")

    response = client.post(f"{AGENTS}/seed")

    assert response.json() == {"created": ["scripted"], "skipped": ["assistant"]}
    assert client.get(url("assistant")).json() == mine


# --- idempotency -------------------------------------------------------------------------


def test_create_with_a_repeated_key_and_body_replays_the_first_answer(client):
    body = agent_body(id="once")
    headers = {"Idempotency-Key": "create-once"}

    first = client.post(AGENTS, json=body, headers=headers)
    again = client.post(AGENTS, json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert ids(client.get(AGENTS).json()["items"]) == ["once"]


def test_replay_answers_the_first_result_even_after_a_change(client):
    body = agent_body(id="frozen")
    headers = {"Idempotency-Key": "frozen-key"}
    first = client.post(AGENTS, json=body, headers=headers)
    client.patch(url("frozen"), json={"name": "Changed"})

    again = client.post(AGENTS, json=body, headers=headers)

    assert again.status_code == 201
    assert again.json() == first.json()
    assert client.get(url("frozen")).json()["name"] == "Changed"


def test_create_with_a_repeated_key_and_other_body_is_409(client):
    client.post(AGENTS, json=agent_body(id="first"), headers={"Idempotency-Key": "k-1"})

    response = client.post(AGENTS, json=agent_body(id="second"), headers={"Idempotency-Key": "k-1"})

    assert_problem(response, 409, "idempotency_key_reused")
    assert ids(client.get(AGENTS).json()["items"]) == ["first"]


def test_a_rejected_first_attempt_does_not_poison_the_key(client):
    headers = {"Idempotency-Key": "retry-me"}
    rejected = client.post(AGENTS, json={"id": "fixed", "name": "Fixed"}, headers=headers)
    assert_problem(rejected, 400, "validation_error")

    response = client.post(AGENTS, json=agent_body(id="fixed"), headers=headers)

    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers


def test_a_conflicting_first_attempt_is_not_replayed(client):
    make_agent(client, id="busy")
    body = agent_body(id="busy")
    headers = {"Idempotency-Key": "after-conflict"}
    assert_problem(client.post(AGENTS, json=body, headers=headers), 409, "agent_exists")
    client.delete(url("busy"))

    response = client.post(AGENTS, json=body, headers=headers)

    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers


def test_clone_with_a_repeated_key_replays_the_first_answer(client):
    make_agent(client, id="src")
    headers = {"Idempotency-Key": "clone-once"}

    first = client.post(url("src", "clone"), json={"id": "copy"}, headers=headers)
    again = client.post(url("src", "clone"), json={"id": "copy"}, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


# --- roles and credentials ---------------------------------------------------------------


def test_viewer_can_list_and_read(client, keyring):
    make_agent(client, id="seen")
    viewer = auth(keyring["viewer"])

    assert client.get(AGENTS, headers=viewer).status_code == 200
    assert client.get(url("seen"), headers=viewer).status_code == 200
    assert client.get(url("seen", "versions"), headers=viewer).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", AGENTS, agent_body(id="new")),
        ("PATCH", url("seen"), {"name": "Viewer was here"}),
        ("DELETE", url("seen"), None),
        ("POST", url("seen", "clone"), {"id": "copy"}),
        ("POST", url("seen", "versions", 1, "promote"), None),
        ("POST", url("seen", "rollback"), None),
        ("POST", f"{AGENTS}/seed", None),
    ],
    ids=["create", "update", "delete", "clone", "promote", "rollback", "seed"],
)
def test_viewer_cannot_change_agents(client, keyring, method, path, body):
    before = make_agent(client, id="seen")

    response = client.request(method, path, json=body, headers=auth(keyring["viewer"]))

    assert_problem(response, 403, "role_too_low")
    assert ids(client.get(AGENTS).json()["items"]) == ["seen"]
    assert client.get(url("seen")).json() == before


def test_operator_can_manage_agents(client, keyring):
    operator = auth(keyring["operator"])

    created = client.post(AGENTS, json=agent_body(id="ops"), headers=operator)
    updated = client.patch(url("ops"), json={"name": "Ops"}, headers=operator)
    cloned = client.post(url("ops", "clone"), json={"id": "ops-2"}, headers=operator)
    seeded = client.post(f"{AGENTS}/seed", headers=operator)
    deleted = client.delete(url("ops"), headers=operator)

    statuses = [r.status_code for r in (created, updated, cloned, seeded, deleted)]
    assert statuses == [201, 200, 201, 200, 204]


def test_operator_create_records_the_operator_as_version_author(client, keyring):
    operator = auth(keyring["operator"])
    operator_id = client.get("/api/v1/auth/me", headers=operator).json()["key_id"]

    client.post(AGENTS, json=agent_body(id="authored"), headers=operator)

    assert versions(client, "authored")[0]["created_by"] == operator_id


@pytest.mark.parametrize(
    ("method", "path"), [("GET", AGENTS), ("POST", AGENTS), ("GET", url("any"))]
)
def test_no_key_is_401_with_www_authenticate(anon, method, path):
    response = anon.request(method, path, json=agent_body() if method == "POST" else None)

    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].lower().startswith("bearer")


def test_an_unknown_key_is_401(anon):
    response = anon.get(AGENTS, headers=auth("aeth_not-a-real-key"))

    assert_problem(response, 401, "unauthorized")
    assert "www-authenticate" in response.headers


def test_a_revoked_key_is_401(client, anon):
    created = client.post("/api/v1/api-keys", json={"name": "short-lived", "role": "operator"})
    secret = created.json()["secret"]
    assert anon.get(AGENTS, headers=auth(secret)).status_code == 200
    client.delete(created.headers["location"], headers={"X-Confirm": "yes"})

    response = anon.post(AGENTS, json=agent_body(id="late"), headers=auth(secret))

    assert_problem(response, 401, "unauthorized")
    assert_problem(anon.get(AGENTS, headers=auth(secret)), 401, "unauthorized")
    assert client.get(url("late")).status_code == 404
