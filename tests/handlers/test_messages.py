"""Messages in a session: send (plain and streamed), provider failures, retry, edit, stop."""

from __future__ import annotations

import pytest

from tests.assertions import TRACE_ID, assert_problem
from tests.handlers.test_sessions import (
    AGENTS,
    ELAPSED,
    NOW,
    TURNS,
    all_pages,
    assert_bad_request,
    assert_provider_problem,
    history,
    ids,
    new_session,
    said,
    send,
    turns,
    url,
)

# --- send --------------------------------------------------------------------------------


def test_send_answers_the_reply_and_its_turn(client, clock):
    session = new_session(client, prompt="You help.")

    response = client.post(url(session["id"], "messages"), json={"content": "Hello there"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    message_id, turn_id = body["message"]["id"], body["turn"]["id"]
    user_id = body["turn"]["user_message_id"]
    assert message_id.startswith("msg_") and turn_id.startswith("trn_")
    assert user_id.startswith("msg_") and user_id < message_id
    assert body == {
        "message": {
            "id": message_id,
            "session_id": session["id"],
            "role": "assistant",
            "content": "Echo: Hello there",
            "status": "complete",
            "turn_id": turn_id,
            "created_at": NOW,
        },
        "turn": {
            "id": turn_id,
            "session_id": session["id"],
            "agent_id": session["agent_id"],
            "agent_config_version": 1,
            "user_message_id": user_id,
            "assistant_message_id": message_id,
            "provider": "builtin",
            "model": "echo",
            "status": "completed",
            "finish_reason": "stop",
            # prompt: "You" "help" "." + "Hello" "there"; reply: "Echo" ":" "Hello" "there"
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
            "latency_ms": ELAPSED,
            "time_to_first_token_ms": ELAPSED,
            "context": [
                {"role": "system", "content": "You help."},
                {"role": "user", "content": "Hello there"},
            ],
            "error": None,
            "approval_id": None,
            "memories_used": [],
            "skills": {"offered": [], "loaded": []},
            "trace_id": TRACE_ID,
            "steps": [
                {
                    "index": 1,
                    "attempt": 1,
                    "kind": "llm",
                    "name": "builtin/echo",
                    "status": "ok",
                    "input": {"messages": 2, "tools": []},
                    "output": {"text": "Echo: Hello there", "tool_calls": []},
                    "error": None,
                    "tokens": {"prompt_tokens": 5, "completion_tokens": 4},
                    "approval_id": None,
                    "tool_execution_id": None,
                    "started_at": NOW,
                    "duration_ms": ELAPSED,
                }
            ],
            "created_at": NOW,
            "completed_at": NOW,
            "duration_ms": 0,  # the fake clock stood still
        },
    }


def test_send_stores_the_user_message_and_the_reply(client, clock):
    session = new_session(client)

    reply = send(client, session["id"], "Hello there")

    assert history(client, session["id"]) == [
        {
            "id": reply["turn"]["user_message_id"],
            "session_id": session["id"],
            "role": "user",
            "content": "Hello there",
            "status": "complete",
            "turn_id": None,
            "created_at": NOW,
        },
        reply["message"],
    ]
    assert turns(client, session["id"]) == [reply["turn"]]


def test_the_turn_records_the_agents_current_config_version_and_prompt(client):
    session = new_session(client, prompt="Old prompt.")
    response = client.patch(f"{AGENTS}/{session['agent_id']}", json={"system_prompt": "New."})
    assert response.json()["config_version"] == 2

    turn = send(client, session["id"], "hi")["turn"]

    assert turn["agent_config_version"] == 2
    assert turn["context"] == [
        {"role": "system", "content": "New."},
        {"role": "user", "content": "hi"},
    ]


def test_an_agent_without_a_system_prompt_sends_no_system_message(client):
    session = new_session(client, prompt="")

    turn = send(client, session["id"], "hi")["turn"]

    assert turn["context"] == [{"role": "user", "content": "hi"}]


def test_the_scripted_model_replies_as_told(client):
    session = new_session(client, model="builtin/scripted")

    reply = send(client, session["id"], "/reply Sure thing.\n/reply Anything else?")

    assert reply["message"]["content"] == "Sure thing.\nAnything else?"
    assert (reply["turn"]["model"], reply["turn"]["finish_reason"]) == ("scripted", "stop")


def test_history_is_oldest_first(client):
    session = new_session(client)
    first = send(client, session["id"], "one")
    second = send(client, session["id"], "two")

    messages = history(client, session["id"])

    assert said(messages) == [
        ("user", "one"),
        ("assistant", "Echo: one"),
        ("user", "two"),
        ("assistant", "Echo: two"),
    ]
    assert ids(messages) == [
        first["turn"]["user_message_id"],
        first["message"]["id"],
        second["turn"]["user_message_id"],
        second["message"]["id"],
    ]


def test_history_pages_oldest_first(client):
    session = new_session(client)
    for word in ("one", "two", "three"):
        send(client, session["id"], word)
    every = ids(history(client, session["id"]))

    pages = all_pages(client, url(session["id"], "messages"), limit=4)

    assert pages == [every[:4], every[4:]]
    assert len(every) == 6


def test_turns_are_one_per_reply_oldest_first(client):
    session = new_session(client)
    replies = [send(client, session["id"], word) for word in ("one", "two", "three")]

    assert turns(client, session["id"]) == [reply["turn"] for reply in replies]
    assert all_pages(client, url(session["id"], "turns"), limit=2) == [
        [replies[0]["turn"]["id"], replies[1]["turn"]["id"]],
        [replies[2]["turn"]["id"]],
    ]


def test_the_next_turns_context_holds_the_earlier_exchange(client):
    session = new_session(client, prompt="You help.")
    send(client, session["id"], "first question")

    turn = send(client, session["id"], "second question")["turn"]

    assert turn["context"] == [
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "Echo: first question"},
        {"role": "user", "content": "second question"},
    ]


def test_sessions_do_not_share_history(client):
    session, other = new_session(client), new_session(client)
    send(client, other["id"], "elsewhere")

    turn = send(client, session["id"], "here")["turn"]

    assert turn["context"] == [
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "here"},
    ]


@pytest.mark.parametrize("status", ["paused", "disabled"])
def test_sending_to_an_agent_that_is_not_active_is_409(client, status):
    session = new_session(client)
    client.patch(f"{AGENTS}/{session['agent_id']}", json={"status": status})

    response = client.post(url(session["id"], "messages"), json={"content": "anyone?"})

    assert_problem(response, 409, "agent_not_active")
    assert history(client, session["id"]) == []
    assert turns(client, session["id"]) == []


def test_sending_to_an_agent_whose_provider_is_not_configured_is_422(client):
    session = new_session(client, model="nowhere/model")

    response = client.post(url(session["id"], "messages"), json={"content": "anyone?"})

    assert_problem(response, 422, "provider_not_configured")
    assert history(client, session["id"]) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.content"),
        ({"content": ""}, "body.content"),
        ({"content": 5}, "body.content"),
        ({"content": "hi", "stream": "yes"}, "body.stream"),
        ({"content": "hi", "role": "system"}, "body.role"),
    ],
    ids=["missing", "empty", "number", "stream-string", "extra"],
)
def test_send_rejects_bad_input_naming_the_field(client, body, field):
    session = new_session(client)

    assert_bad_request(client.post(url(session["id"], "messages"), json=body), field)
    assert history(client, session["id"]) == []


def test_send_to_an_unknown_session_is_404(client):
    response = client.post(url("ses_unknown", "messages"), json={"content": "hello?"})

    assert_problem(response, 404, "session_not_found")


# --- provider failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [(502, 502, "provider_error"), (503, 502, "provider_error"), (504, 504, "provider_timeout")],
)
def test_a_provider_failure_keeps_the_user_message_and_fails_the_turn(
    client, clock, upstream, status, code
):
    session = new_session(client, model="builtin/scripted")
    content = f"/error {upstream}"

    response = client.post(url(session["id"], "messages"), json={"content": content})

    problem = assert_provider_problem(response, status, code)
    assert problem["upstream_status"] == upstream
    messages = history(client, session["id"])
    assert said(messages) == [("user", content)]
    [turn] = turns(client, session["id"])
    assert turn["status"] == "failed"
    assert turn["user_message_id"] == messages[0]["id"]
    assert turn["assistant_message_id"] is None
    assert turn["finish_reason"] is None
    assert turn["completed_at"] == NOW
    without_request_id = {k: v for k, v in problem.items() if k != "request_id"}
    assert {k: v for k, v in turn["error"].items() if k != "request_id"} == without_request_id
    assert client.get(url(session["id"])).json()["message_count"] == 1


def test_a_failed_turn_does_not_block_the_next_message(client):
    session = new_session(client, model="builtin/scripted")
    client.post(url(session["id"], "messages"), json={"content": "/error 502"})

    reply = send(client, session["id"], "/reply Back again.")

    assert reply["message"]["content"] == "Back again."
    assert [turn["status"] for turn in turns(client, session["id"])] == ["failed", "completed"]


# --- retry -------------------------------------------------------------------------------


def test_retry_regenerates_the_last_reply(client):
    session = new_session(client)
    old = send(client, session["id"], "again")

    response = client.post(url(session["id"], "retry"))

    assert response.status_code == 200, response.text
    new = response.json()
    assert new["message"]["id"] != old["message"]["id"]
    assert new["turn"]["id"] != old["turn"]["id"]
    assert new["message"]["content"] == "Echo: again"
    assert new["turn"]["user_message_id"] == old["turn"]["user_message_id"]
    assert new["turn"]["context"] == old["turn"]["context"]
    assert ids(history(client, session["id"])) == [
        old["turn"]["user_message_id"],
        new["message"]["id"],
    ]
    assert turns(client, session["id"]) == [new["turn"]]
    assert_problem(client.get(f"{TURNS}/{old['turn']['id']}"), 404, "turn_not_found")
    assert client.get(url(session["id"])).json()["message_count"] == 2


def test_retry_keeps_the_earlier_exchanges(client):
    session = new_session(client)
    first = send(client, session["id"], "one")
    send(client, session["id"], "two")

    new = client.post(url(session["id"], "retry")).json()

    assert said(history(client, session["id"])) == [
        ("user", "one"),
        ("assistant", "Echo: one"),
        ("user", "two"),
        ("assistant", "Echo: two"),
    ]
    assert turns(client, session["id"]) == [first["turn"], new["turn"]]
    assert new["turn"]["context"][1:3] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Echo: one"},
    ]


def test_retry_after_a_provider_failure_tries_the_same_message_again(client):
    session = new_session(client, model="builtin/scripted")
    client.post(url(session["id"], "messages"), json={"content": "/error 502"})

    response = client.post(url(session["id"], "retry"))

    assert_provider_problem(response, 502, "provider_error")
    assert said(history(client, session["id"])) == [("user", "/error 502")]
    assert [turn["status"] for turn in turns(client, session["id"])] == ["failed"]


def test_retry_with_nothing_to_retry_is_409(client):
    session = new_session(client)

    assert_problem(client.post(url(session["id"], "retry")), 409, "nothing_to_retry")
    assert history(client, session["id"]) == []


def test_retry_in_a_closed_session_is_409(client):
    session = new_session(client)
    before = send(client, session["id"], "hi")
    client.post(url(session["id"], "close"))

    assert_problem(client.post(url(session["id"], "retry")), 409, "session_closed")
    assert turns(client, session["id"]) == [before["turn"]]


def test_retry_unknown_session_is_404(client):
    assert_problem(client.post(url("ses_unknown", "retry")), 404, "session_not_found")


# --- edit --------------------------------------------------------------------------------


def test_editing_a_user_message_drops_later_messages_and_regenerates(client):
    session = new_session(client, prompt="You help.")
    first = send(client, session["id"], "one")
    second = send(client, session["id"], "two")
    user_id = first["turn"]["user_message_id"]

    response = client.patch(url(session["id"], "messages", user_id), json={"content": "uno"})

    assert response.status_code == 200, response.text
    new = response.json()
    assert new["message"]["content"] == "Echo: uno"
    assert new["turn"]["user_message_id"] == user_id
    assert new["turn"]["context"] == [
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "uno"},
    ]
    messages = history(client, session["id"])
    assert said(messages) == [("user", "uno"), ("assistant", "Echo: uno")]
    assert ids(messages) == [user_id, new["message"]["id"]]
    assert turns(client, session["id"]) == [new["turn"]]
    for gone in (first, second):
        assert_problem(client.get(f"{TURNS}/{gone['turn']['id']}"), 404, "turn_not_found")
    assert client.get(url(session["id"])).json()["message_count"] == 2


def test_editing_the_last_user_message_keeps_the_earlier_exchange(client):
    session = new_session(client)
    first = send(client, session["id"], "one")
    second = send(client, session["id"], "two")

    new = client.patch(
        url(session["id"], "messages", second["turn"]["user_message_id"]), json={"content": "dos"}
    ).json()

    assert said(history(client, session["id"])) == [
        ("user", "one"),
        ("assistant", "Echo: one"),
        ("user", "dos"),
        ("assistant", "Echo: dos"),
    ]
    assert turns(client, session["id"]) == [first["turn"], new["turn"]]


def test_editing_an_assistant_message_is_409_and_changes_nothing(client):
    session = new_session(client)
    reply = send(client, session["id"], "one")
    before = history(client, session["id"])

    response = client.patch(
        url(session["id"], "messages", reply["message"]["id"]), json={"content": "forged"}
    )

    assert_problem(response, 409, "not_a_user_message")
    assert history(client, session["id"]) == before
    assert turns(client, session["id"]) == [reply["turn"]]


def test_editing_an_unknown_message_is_404(client):
    session = new_session(client)
    send(client, session["id"], "one")

    response = client.patch(url(session["id"], "messages", "msg_unknown"), json={"content": "x"})

    assert_problem(response, 404, "message_not_found")


def test_editing_another_sessions_message_is_404(client):
    session, other = new_session(client), new_session(client)
    elsewhere = send(client, other["id"], "theirs")

    response = client.patch(
        url(session["id"], "messages", elsewhere["turn"]["user_message_id"]),
        json={"content": "mine now"},
    )

    assert_problem(response, 404, "message_not_found")
    assert said(history(client, other["id"])) == [("user", "theirs"), ("assistant", "Echo: theirs")]


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "body.content"), ({"content": ""}, "body.content"), ({"content": "x", "n": 1}, "body.n")],
    ids=["missing", "empty", "extra"],
)
def test_edit_rejects_bad_input_naming_the_field(client, body, field):
    session = new_session(client)
    reply = send(client, session["id"], "one")

    response = client.patch(
        url(session["id"], "messages", reply["turn"]["user_message_id"]), json=body
    )

    assert_bad_request(response, field)
    assert said(history(client, session["id"])) == [("user", "one"), ("assistant", "Echo: one")]


# --- stop --------------------------------------------------------------------------------


def test_stop_with_nothing_running_says_so(client):
    session = new_session(client)
    send(client, session["id"], "done already")

    response = client.post(url(session["id"], "stop"))

    assert response.status_code == 200, response.text
    assert response.json() == {"stopped": False, "turn_id": None}


def test_stop_unknown_session_is_404(client):
    assert_problem(client.post(url("ses_unknown", "stop")), 404, "session_not_found")
