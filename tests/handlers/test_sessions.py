"""Behaviour of the sessions operations: CRUD, close, messages (send, history, edit), turns,
retry, stop, provider failures and roles. Replies come from the offline ``builtin`` models:
``echo`` answers ``"Echo: <text>"``; ``scripted`` follows ``/reply``, ``/error``, ``/sleep``
directives. Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import json

import pytest

from db.sessions import Message, Turn
from tests.assertions import PROBLEM_KEYS, assert_problem, error_fields
from tests.conftest import auth
from tests.factories import make_agent

SESSIONS = "/api/v1/sessions"
AGENTS = "/api/v1/agents"
TURNS = "/api/v1/turns"
NOW = "2026-01-01T12:00:00.000Z"  # the fake clock's start, as the API writes it
LATER = "2026-01-01T12:05:00.000Z"  # NOW plus the five minutes some tests advance


# --- helpers (shared with test_turns and test_chat_streaming) ----------------------------


class Elapsed:
    """Equal to any non-negative number: a measured duration, whose value tests never pin."""

    def __eq__(self, other) -> bool:
        return isinstance(other, int | float) and not isinstance(other, bool) and other >= 0

    def __repr__(self) -> str:
        return "<elapsed ms>"


ELAPSED = Elapsed()


def url(session_id: str, *rest: str) -> str:
    return "/".join([SESSIONS, session_id, *rest])


def new_session(client, *, model: str = "builtin/echo", prompt: str = "You help.", **fields):
    """A session with a fresh agent using ``model`` and system prompt ``prompt``."""
    agent = make_agent(client, model=model, system_prompt=prompt)
    response = client.post(SESSIONS, json={"agent_id": agent["id"], **fields})
    assert response.status_code == 201, response.text
    return response.json()


def send(client, session_id: str, content: str, **kw) -> dict:
    """Send a message (plain JSON) and return the ``{message, turn}`` answer."""
    response = client.post(url(session_id, "messages"), json={"content": content}, **kw)
    assert response.status_code == 200, response.text
    return response.json()


def listing(client, path: str, **params) -> list[dict]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def history(client, session_id: str) -> list[dict]:
    return listing(client, url(session_id, "messages"), limit=200)


def turns(client, session_id: str) -> list[dict]:
    return listing(client, url(session_id, "turns"), limit=200)


def said(messages: list[dict]) -> list[tuple[str, str]]:
    """(role, content) of each message, in order."""
    return [(message["role"], message["content"]) for message in messages]


def ids(items: list[dict]) -> list[str]:
    return [item["id"] for item in items]


def assert_provider_problem(response, status: int, code: str) -> dict:
    """A provider failure: a problem with every required member, plus the upstream's
    status and the provider (the Problem schema allows extra members)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == PROBLEM_KEYS | {"upstream_status", "provider"}, body
    assert (body["status"], body["code"], body["provider"]) == (status, code, "builtin")
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def assert_bad_request(response, field: str) -> dict:
    body = assert_problem(response, 400, "validation_error")
    assert field in error_fields(response), body
    return body


def all_pages(client, path: str, **params) -> list[list[str]]:
    """The ids on every page of a list, following ``next_cursor`` until it is null."""
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        pages.append(ids(response.json()["items"]))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"


def expected_session(**fields) -> dict:
    body = {
        "title": "",
        "metadata": {},
        "status": "open",
        "message_count": 0,
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
        "closed_at": None,
    }
    body.update(fields)
    return body


# --- create ------------------------------------------------------------------------------


def test_create_answers_201_with_location_and_etag(client, clock):
    agent = make_agent(client)

    response = client.post(SESSIONS, json={"agent_id": agent["id"]})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("ses_")
    assert response.headers["location"] == f"{SESSIONS}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body == expected_session(id=body["id"], agent_id=agent["id"])


def test_create_keeps_title_and_metadata(client, clock):
    agent = make_agent(client)
    metadata = {"ticket": "T-1", "tags": ["a", "b"], "nested": {"n": 1}}

    response = client.post(
        SESSIONS, json={"agent_id": agent["id"], "title": "Planning", "metadata": metadata}
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body == expected_session(
        id=body["id"], agent_id=agent["id"], title="Planning", metadata=metadata
    )


def test_created_session_is_what_its_location_answers(client):
    agent = make_agent(client)
    created = client.post(SESSIONS, json={"agent_id": agent["id"], "title": "Here"})

    fetched = client.get(created.headers["location"])

    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == created.json()
    assert fetched.headers["etag"] == created.headers["etag"]


def test_create_for_an_unknown_agent_is_422_and_stores_nothing(client):
    response = client.post(SESSIONS, json={"agent_id": "ghost"})

    assert_problem(response, 422, "agent_not_found")
    assert listing(client, SESSIONS) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.agent_id"),
        ({"agent_id": "Not A Slug"}, "body.agent_id"),
        ({"agent_id": 7}, "body.agent_id"),
        ({"agent_id": "a", "title": "x" * 201}, "body.title"),
        ({"agent_id": "a", "title": "two\nlines"}, "body.title"),
        ({"agent_id": "a", "metadata": "flat"}, "body.metadata"),
        ({"agent_id": "a", "colour": "blue"}, "body.colour"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else value,
)
def test_create_rejects_bad_input_naming_the_field(client, body, field):
    make_agent(client, id="a")

    response = client.post(SESSIONS, json=body)

    assert_bad_request(response, field)
    assert listing(client, SESSIONS) == []


# --- list --------------------------------------------------------------------------------


def test_list_answers_newest_first(client):
    agent = make_agent(client)
    made = [client.post(SESSIONS, json={"agent_id": agent["id"]}).json() for _ in range(3)]

    response = client.get(SESSIONS)

    assert response.status_code == 200, response.text
    assert response.json() == {"items": made[::-1], "next_cursor": None}


def test_list_is_empty_without_sessions(client):
    assert client.get(SESSIONS).json() == {"items": [], "next_cursor": None}


def test_list_filters_by_agent(client):
    first, second = make_agent(client, id="first"), make_agent(client, id="second")
    mine = [client.post(SESSIONS, json={"agent_id": first["id"]}).json() for _ in range(2)]
    client.post(SESSIONS, json={"agent_id": second["id"]})

    assert ids(listing(client, SESSIONS, agent_id="first")) == ids(mine)[::-1]


def test_list_filters_by_status(client):
    agent = make_agent(client)
    made = [client.post(SESSIONS, json={"agent_id": agent["id"]}).json() for _ in range(3)]
    client.post(url(made[1]["id"], "close"))

    assert ids(listing(client, SESSIONS, status="closed")) == [made[1]["id"]]
    assert ids(listing(client, SESSIONS, status="open")) == [made[2]["id"], made[0]["id"]]


def test_list_pages_through_every_session_once_newest_first(client):
    agent = make_agent(client)
    made = [client.post(SESSIONS, json={"agent_id": agent["id"]}).json()["id"] for _ in range(5)]

    pages = all_pages(client, SESSIONS, limit=2)

    assert pages == [made[4:2:-1], made[2:0:-1], made[:1]]


def test_list_paging_keeps_the_filter(client):
    mine, other = make_agent(client, id="mine"), make_agent(client, id="other")
    made = []
    for _ in range(3):
        made.append(client.post(SESSIONS, json={"agent_id": mine["id"]}).json()["id"])
        client.post(SESSIONS, json={"agent_id": other["id"]})

    pages = all_pages(client, SESSIONS, limit=2, agent_id="mine")

    assert pages == [made[:0:-1], made[:1]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "archived"}, "query.status"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 201}, "query.limit"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
    ],
    ids=["status", "limit-0", "limit-201", "cursor"],
)
def test_list_rejects_bad_query_parameters(client, params, field):
    assert_bad_request(client.get(SESSIONS, params=params), field)


# --- get ---------------------------------------------------------------------------------


def test_get_answers_the_session_with_its_version_as_etag(client, clock):
    session = new_session(client, title="Chat")

    response = client.get(url(session["id"]))

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'
    assert response.json() == session


def test_get_unknown_session_is_404(client):
    assert_problem(client.get(url("ses_unknown")), 404, "session_not_found")


def test_get_counts_the_messages(client):
    session = new_session(client)
    send(client, session["id"], "one")
    send(client, session["id"], "two")

    assert client.get(url(session["id"])).json()["message_count"] == 4


# --- update ------------------------------------------------------------------------------


def test_patch_changes_title_and_metadata_and_bumps_the_version(client, clock):
    session = new_session(client)
    clock.advance(minutes=5)

    response = client.patch(
        url(session["id"]), json={"title": "Renamed", "metadata": {"priority": "high"}}
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json() == {
        **session,
        "title": "Renamed",
        "metadata": {"priority": "high"},
        "version": 2,
        "updated_at": LATER,
    }
    assert client.get(url(session["id"])).json() == response.json()


def test_patch_of_one_field_keeps_the_other(client):
    session = new_session(client, title="Kept", metadata={"a": 1})

    response = client.patch(url(session["id"]), json={"metadata": {"b": 2}})

    assert (response.json()["title"], response.json()["metadata"]) == ("Kept", {"b": 2})


def test_patch_that_changes_nothing_leaves_the_session_alone(client, clock):
    session = new_session(client, title="Same")
    clock.advance(minutes=5)

    response = client.patch(url(session["id"]), json={"title": "Same"})

    assert response.status_code == 200, response.text
    assert response.json() == session
    assert response.headers["etag"] == '"1"'


def test_patch_with_the_current_etag_applies(client):
    session = new_session(client)
    etag = client.get(url(session["id"])).headers["etag"]

    response = client.patch(
        url(session["id"]), json={"title": "Matched"}, headers={"If-Match": etag}
    )

    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Matched"


def test_patch_with_a_stale_etag_is_412_and_changes_nothing(client):
    session = new_session(client)
    client.patch(url(session["id"]), json={"title": "First"})
    current = client.get(url(session["id"])).json()

    response = client.patch(url(session["id"]), json={"title": "Lost"}, headers={"If-Match": '"1"'})

    assert_problem(response, 412, "etag_mismatch")
    assert client.get(url(session["id"])).json() == current


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": "x" * 201}, "body.title"),
        ({"title": 5}, "body.title"),
        ({"metadata": ["list"]}, "body.metadata"),
        ({"status": "closed"}, "body.status"),
        ({"agent_id": "other"}, "body.agent_id"),
    ],
    ids=["long-title", "number-title", "list-metadata", "status", "agent_id"],
)
def test_patch_rejects_bad_values_naming_the_field(client, changes, field):
    session = new_session(client)

    assert_bad_request(client.patch(url(session["id"]), json=changes), field)
    assert client.get(url(session["id"])).json() == session


def test_patch_unknown_session_is_404(client):
    response = client.patch(url("ses_unknown"), json={"title": "Nobody"})

    assert_problem(response, 404, "session_not_found")


# --- delete ------------------------------------------------------------------------------


def test_delete_removes_the_session_with_its_messages_and_turns(client):
    session = new_session(client)
    kept = new_session(client)
    reply = send(client, session["id"], "bye")
    send(client, kept["id"], "stay")

    response = client.delete(url(session["id"]))

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_problem(client.get(url(session["id"])), 404, "session_not_found")
    assert_problem(client.get(url(session["id"], "messages")), 404, "session_not_found")
    assert_problem(client.get(url(session["id"], "turns")), 404, "session_not_found")
    assert_problem(client.get(f"{TURNS}/{reply['turn']['id']}"), 404, "turn_not_found")
    assert Message.select().where(Message.session_id == session["id"]).count() == 0
    assert Turn.select().where(Turn.session_id == session["id"]).count() == 0
    assert said(history(client, kept["id"])) == [("user", "stay"), ("assistant", "Echo: stay")]
    assert ids(listing(client, SESSIONS)) == [kept["id"]]


def test_delete_twice_is_404_the_second_time(client):
    session = new_session(client)
    client.delete(url(session["id"]))

    assert_problem(client.delete(url(session["id"])), 404, "session_not_found")


def test_send_to_a_deleted_session_is_404(client):
    session = new_session(client)
    client.delete(url(session["id"]))

    response = client.post(url(session["id"], "messages"), json={"content": "hello?"})

    assert_problem(response, 404, "session_not_found")


# --- close -------------------------------------------------------------------------------


def test_close_marks_the_session_closed(client, clock):
    session = new_session(client)
    clock.advance(minutes=5)

    response = client.post(url(session["id"], "close"))

    assert response.status_code == 200, response.text
    assert response.json() == {
        **session,
        "status": "closed",
        "version": 2,
        "updated_at": LATER,
        "closed_at": LATER,
    }
    assert client.get(url(session["id"])).json() == response.json()


def test_a_closed_session_refuses_new_messages_and_keeps_its_history(client):
    session = new_session(client)
    send(client, session["id"], "before")
    client.post(url(session["id"], "close"))

    response = client.post(url(session["id"], "messages"), json={"content": "after"})

    assert_problem(response, 409, "session_closed")
    assert said(history(client, session["id"])) == [
        ("user", "before"),
        ("assistant", "Echo: before"),
    ]
    assert len(turns(client, session["id"])) == 1


def test_closing_twice_is_fine_and_changes_nothing(client, clock):
    session = new_session(client)
    first = client.post(url(session["id"], "close"))
    clock.advance(minutes=5)

    again = client.post(url(session["id"], "close"))

    assert again.status_code == 200, again.text
    assert again.json() == first.json()


def test_close_unknown_session_is_404(client):
    assert_problem(client.post(url("ses_unknown", "close")), 404, "session_not_found")


# --- roles -------------------------------------------------------------------------------


def test_viewer_can_read_sessions_messages_and_turns(client, keyring):
    session = new_session(client)
    reply = send(client, session["id"], "hi")
    viewer = auth(keyring["viewer"])

    assert ids(client.get(SESSIONS, headers=viewer).json()["items"]) == [session["id"]]
    assert client.get(url(session["id"]), headers=viewer).json()["id"] == session["id"]
    messages = client.get(url(session["id"], "messages"), headers=viewer).json()["items"]
    assert said(messages) == [("user", "hi"), ("assistant", "Echo: hi")]
    listed = client.get(url(session["id"], "turns"), headers=viewer).json()["items"]
    assert listed == [reply["turn"]]
    assert client.get(f"{TURNS}/{reply['turn']['id']}", headers=viewer).json() == reply["turn"]


def test_viewer_cannot_send_and_nothing_is_stored(client, keyring):
    session = new_session(client)

    response = client.post(
        url(session["id"], "messages"), json={"content": "hi"}, headers=auth(keyring["viewer"])
    )

    assert_problem(response, 403, "role_too_low")
    assert history(client, session["id"]) == []


@pytest.mark.parametrize(
    ("method", "rest", "body"),
    [
        ("PATCH", (), {"title": "Viewer was here"}),
        ("DELETE", (), None),
        ("POST", ("close",), None),
        ("POST", ("retry",), None),
        ("POST", ("stop",), None),
        ("PATCH", ("messages", "{user}"), {"content": "edited"}),
    ],
    ids=["update", "delete", "close", "retry", "stop", "edit"],
)
def test_viewer_cannot_change_sessions(client, keyring, method, rest, body):
    session = new_session(client)
    reply = send(client, session["id"], "hi")
    before = (client.get(url(session["id"])).json(), history(client, session["id"]))
    path = url(session["id"], *rest).replace("{user}", reply["turn"]["user_message_id"])

    response = client.request(method, path, json=body, headers=auth(keyring["viewer"]))

    assert_problem(response, 403, "role_too_low")
    assert (client.get(url(session["id"])).json(), history(client, session["id"])) == before


def test_viewer_cannot_create_sessions(client, keyring):
    agent = make_agent(client)

    response = client.post(
        SESSIONS, json={"agent_id": agent["id"]}, headers=auth(keyring["viewer"])
    )

    assert_problem(response, 403, "role_too_low")
    assert listing(client, SESSIONS) == []


def test_operator_can_hold_a_conversation(client, keyring):
    operator = auth(keyring["operator"])
    agent = make_agent(client)

    created = client.post(SESSIONS, json={"agent_id": agent["id"]}, headers=operator)
    sid = created.json()["id"]
    sent = client.post(url(sid, "messages"), json={"content": "hi"}, headers=operator)
    retried = client.post(url(sid, "retry"), headers=operator)
    updated = client.patch(url(sid), json={"title": "Ops"}, headers=operator)
    closed = client.post(url(sid, "close"), headers=operator)
    deleted = client.delete(url(sid), headers=operator)

    statuses = [r.status_code for r in (created, sent, retried, updated, closed, deleted)]
    assert statuses == [201, 200, 200, 200, 200, 204]
