"""Idempotency keys replay for 24 hours, then expire and are pruned by the heartbeat."""

from __future__ import annotations

from db.system import IdempotencyRecord
from tests.factories import agent_body


def test_a_key_expires_after_its_replay_window(client, clock):
    headers = {"Idempotency-Key": "k-1"}
    first = client.post("/api/v1/agents", json=agent_body(id="one"), headers=headers)
    assert first.status_code == 201
    reused = client.post("/api/v1/agents", json=agent_body(id="two"), headers=headers)
    assert reused.status_code == 409
    clock.advance(hours=25)
    fresh = client.post("/api/v1/agents", json=agent_body(id="two"), headers=headers)
    assert fresh.status_code == 201
    assert "idempotent-replayed" not in fresh.headers


def test_the_heartbeat_prunes_expired_records(app, client, clock):
    client.post("/api/v1/agents", json=agent_body(), headers={"Idempotency-Key": "old"})
    clock.advance(hours=25)
    client.post("/api/v1/agents", json=agent_body(), headers={"Idempotency-Key": "new"})
    app.runtime.beat()
    assert [r.key for r in IdempotencyRecord.select()] == ["new"]
