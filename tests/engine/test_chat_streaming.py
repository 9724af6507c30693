"""Streaming chat replies as server-sent events: framing, the event sequence, failures
mid-stream, keep-alives, stop, clients that go away, and one generation per session.
Replies come from the offline ``builtin`` models. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Iterable, Iterator

import pytest

from hub.http import sse as streaming
from tests.assertions import PROBLEM_KEYS, assert_problem
from tests.conftest import auth
from tests.handlers.test_sessions import (
    ELAPSED,
    NOW,
    history,
    new_session,
    said,
    send,
    turns,
    url,
)
from tests.sse import frames

with warnings.catch_warnings():  # starlette warns that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TURNS = "/api/v1/turns"

# A reply in four parts with pauses between them: slow enough to stop or leave mid-way.
SLOW = "\n".join(
    [
        "/reply alpha beta",
        "/sleep 500",
        "/reply gamma delta",
        "/sleep 500",
        "/reply epsilon zeta",
        "/sleep 500",
        "/reply eta theta",
    ]
)
SLOW_REPLY = "alpha beta\ngamma delta\nepsilon zeta\neta theta"


# --- helpers -----------------------------------------------------------------------------


def events(blocks: Iterable[dict]) -> list[dict]:
    """The events among ``blocks`` (comments dropped), each checked: it has an ``id``, ids
    increase, and ``event`` names the data's ``type``. Returns the data payloads."""
    payloads, last_id = [], 0
    for block in blocks:
        if "comment" in block and "data" not in block:
            continue
        assert set(block) == {"id", "event", "data"}, block
        assert int(block["id"]) > last_id, block
        last_id = int(block["id"])
        assert block["event"] == block["data"]["type"], block
        payloads.append(block["data"])
    return payloads


def stream(client, session_id: str, content: str, *, accept: bool = False):
    """Open a streaming send: ``"stream": true`` in the body, or ``Accept`` when ``accept``."""
    if accept:
        return client.stream(
            "POST",
            url(session_id, "messages"),
            json={"content": content},
            headers={"Accept": "text/event-stream"},
        )
    return client.stream(
        "POST", url(session_id, "messages"), json={"content": content, "stream": True}
    )


def streamed(client, session_id: str, content: str, **kw) -> list[dict]:
    """Every event of a streaming send, read to the end."""
    with stream(client, session_id, content, **kw) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return events(frames(response.iter_lines()))


def types(payloads: list[dict]) -> list[str]:
    return [payload["type"] for payload in payloads]


def text_of(payloads: list[dict]) -> str:
    return "".join(payload["text"] for payload in payloads if payload["type"] == "token")


def until(blocks: Iterator[dict], kind: str) -> list[dict]:
    """Read events from ``blocks`` up to and including the first of type ``kind``."""
    read = []
    for payload in events_lazily(blocks):
        read.append(payload)
        if payload["type"] == kind:
            return read
    raise AssertionError(f"the stream ended without a {kind!r} event: {read}")


def events_lazily(blocks: Iterator[dict]) -> Iterator[dict]:
    for block in blocks:
        if "data" in block:
            yield block["data"]


def settled_turn(client, turn_id: str) -> dict:
    """The turn once it is no longer running (bounded polling, no timing asserted)."""
    for _ in range(400):
        turn = client.get(f"{TURNS}/{turn_id}").json()
        if turn["status"] != "running":
            return turn
        time.sleep(0.025)
    raise AssertionError(f"turn {turn_id} still running")


# --- the event sequence ------------------------------------------------------------------


@pytest.mark.parametrize("accept", [False, True], ids=["stream-flag", "accept-header"])
def test_a_streamed_reply_is_start_tokens_then_done(client, accept):
    session = new_session(client)

    payloads = streamed(client, session["id"], "Hello streaming world", accept=accept)

    assert types(payloads) == ["start"] + ["token"] * (len(payloads) - 2) + ["done"]
    assert len(payloads) - 2 >= 4  # "Echo: " "Hello " "streaming " "world", one at a time
    [stored_user, stored_reply] = history(client, session["id"])
    assert text_of(payloads) == stored_reply["content"] == "Echo: Hello streaming world"
    assert stored_user["content"] == "Hello streaming world"


def test_start_names_the_turn_and_the_message_done_carries_them(client, clock):
    session = new_session(client, prompt="You help.")

    payloads = streamed(client, session["id"], "Hello there")

    start, done = payloads[0], payloads[-1]
    [turn] = turns(client, session["id"])
    message = history(client, session["id"])[1]
    assert start == {"type": "start", "turn_id": turn["id"], "message_id": message["id"]}
    assert done == {
        "type": "done",
        "finish_reason": "stop",
        # prompt: "You" "help" "." + "Hello" "there"; reply: "Echo" ":" "Hello" "there"
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        "message": message,
        "turn": turn,
    }
    assert message == {
        "id": message["id"],
        "session_id": session["id"],
        "role": "assistant",
        "content": "Echo: Hello there",
        "status": "complete",
        "turn_id": turn["id"],
        "created_at": NOW,
    }
    assert (turn["status"], turn["provider"], turn["model"]) == ("completed", "builtin", "echo")
    assert (turn["latency_ms"], turn["time_to_first_token_ms"]) == (ELAPSED, ELAPSED)
    assert turn["context"] == [
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "Hello there"},
    ]


def test_a_scripted_reply_streams_every_token_it_stores(client):
    session = new_session(client, model="builtin/scripted")

    payloads = streamed(client, session["id"], "/reply one two three\n/reply four five")

    assert text_of(payloads) == "one two three\nfour five"
    assert payloads[-1]["message"]["content"] == "one two three\nfour five"
    assert history(client, session["id"])[1] == payloads[-1]["message"]


def test_a_streamed_exchange_is_history_for_the_next_turn(client):
    session = new_session(client, prompt="You help.")
    streamed(client, session["id"], "first")

    turn = send(client, session["id"], "second")["turn"]

    assert turn["context"] == [
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Echo: first"},
        {"role": "user", "content": "second"},
    ]


def test_a_refused_stream_is_a_plain_problem(client):
    session = new_session(client)
    client.post(url(session["id"], "close"))

    with stream(client, session["id"], "hello?") as response:
        response.read()

    assert_problem(response, 409, "session_closed")


# --- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "tokens", "status", "code"),
    [
        ("/reply partial answer\n/error 500", ["partial ", "answer"], 502, "provider_error"),
        ("/error 503", [], 502, "provider_error"),
        ("/reply almost\n/error 504", ["almost"], 504, "provider_timeout"),
    ],
    ids=["500-mid-stream", "503-at-once", "504-mid-stream"],
)
def test_a_provider_failure_ends_the_stream_with_an_error_event(
    client, script, tokens, status, code
):
    session = new_session(client, model="builtin/scripted")

    payloads = streamed(client, session["id"], script)

    assert types(payloads) == ["start"] + ["token"] * len(tokens) + ["error"]
    assert text_of(payloads) == "".join(tokens)
    problem = payloads[-1]["problem"]
    assert set(problem) >= PROBLEM_KEYS, problem
    assert (problem["status"], problem["code"], problem["provider"]) == (status, code, "builtin")
    assert problem["type"].startswith("https://") and problem["title"] and problem["detail"]
    [turn] = turns(client, session["id"])
    assert turn["id"] == payloads[0]["turn_id"]
    assert turn["status"] == "failed"
    assert turn["assistant_message_id"] is None
    strip = {"request_id"}
    assert {k: v for k, v in turn["error"].items() if k not in strip} == {
        k: v for k, v in problem.items() if k not in strip
    }
    assert said(history(client, session["id"])) == [("user", script)]


# --- keep-alive --------------------------------------------------------------------------


def test_a_silent_model_gets_keep_alive_comments(client, monkeypatch):
    # The handler takes event_stream's keep-alive default, which is bound when the function
    # is defined (so patching KEEPALIVE_SECONDS alone would not reach it): shorten it here.
    fast = functools.partial(streaming.event_stream, keepalive=0.02)
    monkeypatch.setattr(streaming, "event_stream", fast)
    session = new_session(client, model="builtin/scripted")

    with stream(client, session["id"], "/sleep 300\n/reply at last") as response:
        raw = list(response.iter_lines())

    blocks = list(frames(raw))
    first_token = next(i for i, b in enumerate(blocks) if b.get("event") == "token")
    assert {"comment": "keep-alive"} in blocks[1:first_token]
    assert ": keep-alive" in raw
    payloads = events(blocks)
    assert types(payloads) == ["start", "token", "token", "done"]
    assert text_of(payloads) == "at last"


# --- stop --------------------------------------------------------------------------------


def test_stop_ends_the_stream_with_what_was_produced(app, client, keyring):
    session = new_session(client, model="builtin/scripted")
    other = TestClient(app, headers=auth(keyring["operator"]))  # a second caller

    with contextlib.closing(other), stream(client, session["id"], SLOW) as response:
        blocks = frames(response.iter_lines())
        before = until(blocks, "token")
        stopped = other.post(url(session["id"], "stop"))
        after = list(events_lazily(blocks))

    payloads = before + after
    assert stopped.status_code == 200, stopped.text
    assert stopped.json() == {"stopped": True, "turn_id": payloads[0]["turn_id"]}
    assert types(payloads) == ["start"] + ["token"] * (len(payloads) - 2) + ["done"]
    done = payloads[-1]
    produced = text_of(payloads)
    assert done["finish_reason"] == "stopped"
    assert produced and SLOW_REPLY.startswith(produced) and produced != SLOW_REPLY
    assert done["message"]["content"] == produced
    assert done["message"]["status"] == "stopped"
    assert done["turn"]["status"] == "stopped"
    assert history(client, session["id"])[1] == done["message"]
    assert turns(client, session["id"]) == [done["turn"]]


def test_after_a_stop_the_session_takes_messages_again(client):
    session = new_session(client, model="builtin/scripted")
    with stream(client, session["id"], SLOW) as response:
        blocks = frames(response.iter_lines())
        until(blocks, "start")
        client.post(url(session["id"], "stop"))
        list(blocks)

    reply = send(client, session["id"], "/reply Still here.")

    assert reply["message"]["content"] == "Still here."
    assert [turn["status"] for turn in turns(client, session["id"])] == ["stopped", "completed"]


# --- clients that go away ----------------------------------------------------------------


def test_a_client_that_goes_away_does_not_cut_the_reply_short(client):
    session = new_session(client, model="builtin/scripted")
    script = "/reply one two\n/sleep 300\n/reply three four"

    with stream(client, session["id"], script) as response:
        [start] = until(frames(response.iter_lines()), "start")

    turn = settled_turn(client, start["turn_id"])
    assert (turn["status"], turn["finish_reason"]) == ("completed", "stop")
    assert turn["assistant_message_id"] == start["message_id"]
    message = history(client, session["id"])[1]
    assert message["id"] == start["message_id"]
    assert (message["content"], message["status"]) == ("one two\nthree four", "complete")


# --- one generation per session ----------------------------------------------------------


def test_sending_while_a_generation_runs_is_409(client):
    session = new_session(client, model="builtin/scripted")

    with stream(client, session["id"], SLOW) as response:
        blocks = frames(response.iter_lines())
        [start] = until(blocks, "start")
        in_flight = history(client, session["id"])
        busy = client.post(url(session["id"], "messages"), json={"content": "me too"})
        client.post(url(session["id"], "stop"))
        list(blocks)

    assert_problem(busy, 409, "generation_in_progress")
    assert [(m["role"], m["status"]) for m in in_flight] == [
        ("user", "complete"),
        ("assistant", "streaming"),
    ]
    assert in_flight[1]["id"] == start["message_id"]
    assert said(history(client, session["id"]))[0] == ("user", SLOW)
    assert len(history(client, session["id"])) == 2
    assert len(turns(client, session["id"])) == 1


@pytest.mark.parametrize(
    ("method", "rest", "body"),
    [
        ("POST", ("retry",), None),
        ("PATCH", ("messages", "{user}"), {"content": "changed"}),
        ("DELETE", (), None),
    ],
    ids=["retry", "edit", "delete"],
)
def test_changing_the_conversation_while_a_generation_runs_is_409(client, method, rest, body):
    session = new_session(client, model="builtin/scripted")

    with stream(client, session["id"], SLOW) as response:
        blocks = frames(response.iter_lines())
        until(blocks, "start")
        user_id = history(client, session["id"])[0]["id"]
        path = url(session["id"], *rest).replace("{user}", user_id)
        busy = client.request(method, path, json=body)
        client.post(url(session["id"], "stop"))
        list(blocks)

    assert_problem(busy, 409, "generation_in_progress")
    assert said(history(client, session["id"]))[0] == ("user", SLOW)
    assert len(turns(client, session["id"])) == 1


def test_another_session_is_not_blocked_by_a_running_generation(client):
    busy_session = new_session(client, model="builtin/scripted")
    free_session = new_session(client)

    with stream(client, busy_session["id"], SLOW) as response:
        blocks = frames(response.iter_lines())
        until(blocks, "start")
        reply = send(client, free_session["id"], "meanwhile")
        client.post(url(busy_session["id"], "stop"))
        list(blocks)

    assert reply["message"]["content"] == "Echo: meanwhile"
