"""A generation that fails in an unexpected way never leaves its turn running."""

from __future__ import annotations

from hub.llm.builtin import BuiltinProvider
from tests.factories import make_agent


def test_an_unexpected_error_fails_the_turn_and_frees_the_session(client, monkeypatch):
    make_agent(client, id="fragile", model="builtin/echo")
    session_id = client.post("/api/v1/sessions", json={"agent_id": "fragile"}).json()["id"]

    async def broken(self, request):
        raise RuntimeError("secret internals")
        yield  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(BuiltinProvider, "stream", broken)
    response = client.post(f"/api/v1/sessions/{session_id}/messages", json={"content": "hi"})
    assert response.status_code == 500
    assert "secret internals" not in response.text
    (turn,) = client.get(f"/api/v1/sessions/{session_id}/turns").json()["items"]
    assert turn["status"] == "failed"
    assert turn["error"]["code"] == "internal_error"
    monkeypatch.undo()
    again = client.post(f"/api/v1/sessions/{session_id}/messages", json={"content": "hi"})
    assert again.status_code == 200, "the session is not left busy"
