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
