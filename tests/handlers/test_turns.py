"""Behaviour of the turns operations: one turn, and the feedback (grade 1-5 and comment)
given on it. Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import pytest

from tests.assertions import TRACE_ID, assert_problem, error_fields
from tests.conftest import auth
from tests.handlers.test_sessions import ELAPSED, LATER, NOW, new_session, send, url

TURNS = "/api/v1/turns"


def turn_url(turn_id: str, *rest: str) -> str:
    return "/".join([TURNS, turn_id, *rest])


def a_turn(client) -> dict:
    """A completed turn: an echo agent's answer to "hi"."""
    session = new_session(client)
    return send(client, session["id"], "hi")["turn"]


# --- get ---------------------------------------------------------------------------------


def test_get_answers_the_whole_turn(client, clock):
    session = new_session(client, prompt="You help.")
    reply = send(client, session["id"], "hi")
    turn = reply["turn"]

    response = client.get(turn_url(turn["id"]))

    assert response.status_code == 200, response.text
    assert response.json() == turn
    assert response.json() == {
        "id": turn["id"],
        "session_id": session["id"],
        "agent_id": session["agent_id"],
        "agent_config_version": 1,
        "user_message_id": turn["user_message_id"],
        "assistant_message_id": reply["message"]["id"],
        "provider": "builtin",
        "model": "echo",
        "status": "completed",
        "finish_reason": "stop",
        # prompt: "You" "help" "." + "hi"; reply: "Echo" ":" "hi"
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
        "latency_ms": ELAPSED,
        "time_to_first_token_ms": ELAPSED,
        "context": [
            {"role": "system", "content": "You help."},
            {"role": "user", "content": "hi"},
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
                "output": {"text": "Echo: hi", "tool_calls": []},
                "error": None,
                "tokens": {"prompt_tokens": 4, "completion_tokens": 3},
                "approval_id": None,
                "tool_execution_id": None,
                "started_at": NOW,
                "duration_ms": ELAPSED,
            }
        ],
        "created_at": NOW,
        "completed_at": NOW,
        "duration_ms": 0,  # the fake clock stood still
    }


def test_get_a_failed_turn_shows_the_problem(client):
    session = new_session(client, model="builtin/scripted")
    failure = client.post(url(session["id"], "messages"), json={"content": "/error 502"})
    [turn] = client.get(url(session["id"], "turns")).json()["items"]

    response = client.get(turn_url(turn["id"]))

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "failed"
    assert response.json()["error"]["code"] == failure.json()["code"] == "provider_error"


def test_get_unknown_turn_is_404(client):
    assert_problem(client.get(turn_url("trn_unknown")), 404, "turn_not_found")


# --- feedback ----------------------------------------------------------------------------


def test_feedback_before_any_is_404(client):
    turn = a_turn(client)

    assert_problem(client.get(turn_url(turn["id"], "feedback")), 404, "feedback_not_found")


def test_put_feedback_answers_it_and_it_can_be_read(client, clock):
    turn = a_turn(client)

    response = client.put(
        turn_url(turn["id"], "feedback"), json={"grade": 4, "comment": "Helpful."}
    )

    expected = {"turn_id": turn["id"], "grade": 4, "comment": "Helpful.", "updated_at": NOW}
    assert response.status_code == 200, response.text
    assert response.json() == expected
    read = client.get(turn_url(turn["id"], "feedback"))
    assert read.status_code == 200, read.text
    assert read.json() == expected


def test_feedback_without_a_comment_has_an_empty_one(client, clock):
    turn = a_turn(client)

    response = client.put(turn_url(turn["id"], "feedback"), json={"grade": 5})

    assert response.json() == {"turn_id": turn["id"], "grade": 5, "comment": "", "updated_at": NOW}


@pytest.mark.parametrize("grade", [1, 2, 3, 4, 5])
def test_every_grade_from_1_to_5_is_accepted(client, grade):
    turn = a_turn(client)

    response = client.put(turn_url(turn["id"], "feedback"), json={"grade": grade})

    assert response.status_code == 200, response.text
    assert client.get(turn_url(turn["id"], "feedback")).json()["grade"] == grade


def test_put_feedback_again_replaces_it(client, clock):
    turn = a_turn(client)
    client.put(turn_url(turn["id"], "feedback"), json={"grade": 2, "comment": "Meh."})
    clock.advance(minutes=5)

    response = client.put(turn_url(turn["id"], "feedback"), json={"grade": 5})

    expected = {"turn_id": turn["id"], "grade": 5, "comment": "", "updated_at": LATER}
    assert response.json() == expected
    assert client.get(turn_url(turn["id"], "feedback")).json() == expected


def test_feedback_belongs_to_its_turn_only(client):
    session = new_session(client)
    graded = send(client, session["id"], "one")["turn"]
    other = send(client, session["id"], "two")["turn"]

    client.put(turn_url(graded["id"], "feedback"), json={"grade": 1})

    assert_problem(client.get(turn_url(other["id"], "feedback")), 404, "feedback_not_found")


def test_feedback_leaves_the_turn_alone(client):
    turn = a_turn(client)

    client.put(turn_url(turn["id"], "feedback"), json={"grade": 3, "comment": "Fine."})

    assert client.get(turn_url(turn["id"])).json() == turn


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grade": 0}, "body.grade"),
        ({"grade": 6}, "body.grade"),
        ({"grade": -1}, "body.grade"),
        ({"grade": 4.5}, "body.grade"),
        ({"grade": "5"}, "body.grade"),
        ({"comment": "No grade."}, "body.grade"),
        ({"grade": 3, "comment": "x" * 5001}, "body.comment"),
        ({"grade": 3, "stars": 3}, "body.stars"),
    ],
    ids=["0", "6", "negative", "fraction", "string", "missing", "long-comment", "extra"],
)
def test_put_feedback_rejects_bad_input_naming_the_field(client, body, field):
    turn = a_turn(client)

    response = client.put(turn_url(turn["id"], "feedback"), json=body)

    problem = assert_problem(response, 400, "validation_error")
    assert field in error_fields(response), problem
    assert_problem(client.get(turn_url(turn["id"], "feedback")), 404, "feedback_not_found")


def test_a_rejected_put_keeps_the_earlier_feedback(client, clock):
    turn = a_turn(client)
    client.put(turn_url(turn["id"], "feedback"), json={"grade": 4, "comment": "Good."})

    response = client.put(turn_url(turn["id"], "feedback"), json={"grade": 6})

    assert_problem(response, 400, "validation_error")
    assert client.get(turn_url(turn["id"], "feedback")).json() == {
        "turn_id": turn["id"],
        "grade": 4,
        "comment": "Good.",
        "updated_at": NOW,
    }


def test_feedback_on_an_unknown_turn_is_404(client):
    assert_problem(client.get(turn_url("trn_unknown", "feedback")), 404, "turn_not_found")
    response = client.put(turn_url("trn_unknown", "feedback"), json={"grade": 3})
    assert_problem(response, 404, "turn_not_found")


# --- roles -------------------------------------------------------------------------------


def test_viewer_can_read_feedback_but_not_give_it(client, keyring):
    turn = a_turn(client)
    client.put(turn_url(turn["id"], "feedback"), json={"grade": 4})
    viewer = auth(keyring["viewer"])

    read = client.get(turn_url(turn["id"], "feedback"), headers=viewer)
    put = client.put(turn_url(turn["id"], "feedback"), json={"grade": 1}, headers=viewer)

    assert (read.status_code, read.json()["grade"]) == (200, 4)
    assert_problem(put, 403, "role_too_low")
    assert client.get(turn_url(turn["id"], "feedback")).json()["grade"] == 4


def test_operator_can_give_feedback(client, keyring):
    turn = a_turn(client)

    response = client.put(
        turn_url(turn["id"], "feedback"), json={"grade": 2}, headers=auth(keyring["operator"])
    )

    assert response.status_code == 200, response.text
