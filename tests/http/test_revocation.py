"""A revoked key loses its open connections (issue 13, break 5): an SSE event stream and a
WebSocket opened with it end, at once when this process revoked it, and at the next heartbeat
when another process did (here: the key revoked in the database behind the hub's back)."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from db.api_keys import ApiKey
from db.base import utcnow, write_transaction
from hub.core import access
from hub.services import keys
from tests.sse import frames

STREAM = "/api/v1/events/stream"


def revoke_here(client, key_id: str) -> None:
    response = client.delete(f"/api/v1/api-keys/{key_id}", headers={"X-Confirm": "yes"})
    assert response.status_code == 204, response.text


def revoke_elsewhere(app, key_id: str) -> None:
    """As another hub process would: the row changes, this process hears nothing."""
    with write_transaction():
        ApiKey.update(revoked_at=utcnow()).where(ApiKey.id == key_id).execute()
    app.runtime.beat()


@pytest.mark.parametrize("where", ["here", "elsewhere"])
def test_an_event_stream_ends_when_its_key_is_revoked(app, client, where):
    key, secret = keys.create("streamer", "viewer")
    headers = {"Authorization": f"Bearer {secret}"}
    with client.stream("GET", STREAM, params={"types": "x.*"}, headers=headers) as response:
        assert response.status_code == 200
        assert key.id in access.watch.key_ids()
        if where == "here":
            revoke_here(client, key.id)
        else:
            revoke_elsewhere(app, key.id)
        blocks = [b for b in frames(response.iter_lines()) if "comment" not in b]
    assert [b["event"] for b in blocks] == ["revoked"]
    assert blocks[0]["data"]["code"] == "api_key_revoked"
    assert key.id not in access.watch.key_ids()


@pytest.mark.parametrize("where", ["here", "elsewhere"])
def test_a_websocket_closes_when_its_key_is_revoked(app, client, where):
    key, secret = keys.create("socket", "operator")
    url = f"/api/v1/ws?token={secret}"
    with client.websocket_connect(url, headers={"Authorization": ""}) as ws:
        ws.send_json({"type": "subscribe", "types": ["x.*"]})
        assert ws.receive_json()["type"] == "subscribed"
        if where == "here":
            revoke_here(client, key.id)
        else:
            revoke_elsewhere(app, key.id)
        frame = ws.receive_json()
        assert frame["type"] == "error" and frame["problem"]["code"] == "api_key_revoked"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1008
    assert key.id not in access.watch.key_ids()


def test_other_keys_keep_their_streams(app, client):
    kept, kept_secret = keys.create("kept", "viewer")
    gone, _ = keys.create("gone", "viewer")
    url = f"/api/v1/ws?token={kept_secret}"
    with client.websocket_connect(url, headers={"Authorization": ""}) as ws:
        revoke_here(client, gone.id)
        app.runtime.beat()
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    assert kept.id not in access.watch.key_ids()  # released when it closed
