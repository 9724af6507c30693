"""``/api/v1/ws``: authenticated chat frames with the SSE stream's event types."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.factories import make_agent


def _session(client, agent_id: str = "talker", model: str = "builtin/echo") -> str:
    make_agent(client, id=agent_id, model=model)
    response = client.post("/api/v1/sessions", json={"agent_id": agent_id})
    assert response.status_code == 201
    return response.json()["id"]


def _connect(client, secret: str):
    """Authenticate with ``?token=`` only (the test client sends an admin header by default)."""
    return client.websocket_connect(f"/api/v1/ws?token={secret}", headers={"Authorization": ""})


def _until_done(ws) -> list[dict]:
    frames = []
    for _ in range(1000):
        frame = ws.receive_json()
        frames.append(frame)
        if frame["type"] in {"done", "error"}:
            return frames
    raise AssertionError("no done frame")


def test_chat_frames_mirror_the_sse_stream(client, keyring):
    session_id = _session(client)
    with _connect(client, keyring["operator"]) as ws:
        ws.send_json({"type": "chat", "session_id": session_id, "content": "hi there"})
        frames = _until_done(ws)
    types = [frame["type"] for frame in frames]
    assert types[0] == "start" and types[-1] == "done"
    assert set(types[1:-1]) == {"token"}
    assert all(frame["session_id"] == session_id for frame in frames)
    text = "".join(frame["text"] for frame in frames if frame["type"] == "token")
    assert text == "Echo: hi there" == frames[-1]["message"]["content"]
    stored = client.get(f"/api/v1/sessions/{session_id}/messages").json()["items"]
    assert [m["content"] for m in stored] == ["hi there", "Echo: hi there"]


def test_authorization_header_works_too(client, keyring):
    headers = {"Authorization": f"Bearer {keyring['viewer']}"}
    with client.websocket_connect("/api/v1/ws", headers=headers) as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


@pytest.mark.parametrize("query", ["", "?token=aeth_wrong"])
def test_no_or_bad_key_is_refused(client, query):
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(f"/api/v1/ws{query}", headers={"Authorization": ""}),
    ):
        pass
    assert refused.value.code == 1008


def test_malformed_frames_get_error_frames_and_the_connection_stays(client, keyring):
    with _connect(client, keyring["operator"]) as ws:
        ws.send_text("not json")
        assert ws.receive_json()["problem"]["code"] == "malformed_frame"
        ws.send_json({"type": "dance"})
        assert ws.receive_json()["problem"]["code"] == "unknown_frame"
        ws.send_json({"type": "chat", "session_id": 7})
        assert ws.receive_json()["problem"]["code"] == "malformed_frame"
        ws.send_json({"type": "chat", "session_id": "ses_missing", "content": "x"})
        assert ws.receive_json()["problem"]["code"] == "session_not_found"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


def test_subscribe_is_acknowledged(client, keyring):
    with _connect(client, keyring["viewer"]) as ws:
        ws.send_json({"type": "subscribe", "types": ["task.*", "agent.created"]})
        assert ws.receive_json() == {"type": "subscribed", "types": ["task.*", "agent.created"]}
        ws.send_json({"type": "subscribe", "types": "task.*"})
        assert ws.receive_json()["type"] == "error"


def test_a_viewer_cannot_chat(client, keyring):
    session_id = _session(client)
    with _connect(client, keyring["viewer"]) as ws:
        ws.send_json({"type": "chat", "session_id": session_id, "content": "hi"})
        frame = ws.receive_json()
        assert frame["problem"]["code"] == "role_too_low", frame


def test_provider_failure_is_an_error_frame(client, keyring):
    session_id = _session(client, "failing", "builtin/scripted")
    with _connect(client, keyring["operator"]) as ws:
        ws.send_json({"type": "chat", "session_id": session_id, "content": "/error 502"})
        frames = _until_done(ws)
    assert frames[-1]["type"] == "error"
    assert frames[-1]["problem"]["status"] == 502


def test_runtime_counts_websocket_clients(client, keyring):
    with _connect(client, keyring["viewer"]) as ws:
        ws.send_json({"type": "ping"})
        ws.receive_json()
        assert client.get("/api/v1/runtime").json()["stream_clients"]["websocket"] == 1
    assert client.get("/api/v1/runtime").json()["stream_clients"]["websocket"] == 0


# --- the same rules as HTTP (issue 13, break 6) -----------------------------------------


@pytest.fixture
def limited(settings):
    return settings.replace(rate_limit_per_minute=5, body_limit=4096)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x" * 100_001, "longer than the contract's maxLength"),
        ("nul \x00 inside", "must not contain NUL characters"),
        ("", "must not be empty"),
    ],
    ids=["over-maxLength", "nul", "empty"],
)
def test_chat_content_is_validated_like_http(client, keyring, content, message):
    session_id = _session(client)
    with _connect(client, keyring["operator"]) as ws:
        ws.send_json({"type": "chat", "session_id": session_id, "content": content})
        frame = ws.receive_json()
    assert frame["type"] == "error"
    assert frame["problem"]["status"] == 400
    assert frame["problem"]["errors"] == [{"field": "content", "message": message}]
    assert "x" * 100 not in str(frame)  # the content is not echoed back
    messages = client.get(f"/api/v1/sessions/{session_id}/messages").json()["items"]
    assert messages == []


def test_frames_count_against_the_rate_limit(limited):
    from starlette.testclient import TestClient

    from hub.app import create_app

    hub = create_app(limited)
    with TestClient(hub) as client, _connect(client, keyring_for(hub)) as ws:
        answers = []
        for _ in range(8):
            ws.send_json({"type": "ping"})
            answers.append(ws.receive_json())
    assert [a["type"] for a in answers[:5]] == ["pong"] * 5
    refused = answers[5:]
    assert all(a["type"] == "error" and a["problem"]["status"] == 429 for a in refused)
    assert all(a["problem"]["retry_after"] >= 1 for a in refused)


def test_a_frame_over_the_body_limit_is_refused(limited):
    from starlette.testclient import TestClient

    from hub.app import create_app

    hub = create_app(limited.replace(rate_limit_per_minute=0))
    with TestClient(hub) as client, _connect(client, keyring_for(hub)) as ws:
        ws.send_text('{"type": "ping", "pad": "' + "x" * 5000 + '"}')
        frame = ws.receive_json()
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}  # the connection stays
    assert frame["problem"]["status"] == 413


def test_nan_in_a_frame_is_refused(client, keyring):
    with _connect(client, keyring["operator"]) as ws:
        ws.send_text('{"type": "subscribe", "types": [], "x": NaN}')
        frame = ws.receive_json()
    assert frame["type"] == "error" and frame["problem"]["status"] == 400


def test_every_chat_frame_is_audited_like_its_http_twin(client, keyring):
    session_id = _session(client)
    with _connect(client, keyring["operator"]) as ws:
        ws.send_json({"type": "chat", "session_id": session_id, "content": "hello"})
        _until_done(ws)
        ws.send_json({"type": "chat", "session_id": session_id, "content": "\x00"})
        ws.receive_json()
    entries = client.get("/api/v1/audit-log", params={"action": "send_message"}).json()["items"]
    websocket_entries = [e for e in entries if e["method"] == "WS"]
    assert sorted(e["status"] for e in websocket_entries) == [200, 400]
    assert {e["resource"] for e in websocket_entries} == {f"/api/v1/sessions/{session_id}/messages"}


def keyring_for(hub) -> str:
    from hub.services import keys

    return keys.create("ws", "operator")[1]
