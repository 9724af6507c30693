"""Idempotency keys replay for 24 hours, then expire and are pruned by the heartbeat."""

from __future__ import annotations

import pytest

from db import base as db_base
from db.system import IdempotencyRecord
from hub.services import idempotency
from tests.assertions import assert_problem
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


def all_text(database) -> str:
    """Every value of every column of every table, as text (to look for a secret anywhere)."""
    chunks = []
    for table in database.get_tables():
        for row in database.execute_sql(f'SELECT * FROM "{table}"').fetchall():
            chunks.extend(str(value) for value in row)
    return "\n".join(chunks)


def test_an_idempotent_key_creation_keeps_no_secret_anywhere(client):
    headers = {"Idempotency-Key": "key-1"}
    body = {"name": "ci", "role": "viewer"}

    first = client.post("/api/v1/api-keys", json=body, headers=headers)
    assert first.status_code == 201, first.text
    secret = first.json()["secret"]
    assert secret and "notice" not in first.json()

    assert secret not in all_text(db_base.database)
    replay = client.post("/api/v1/api-keys", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == {**first.json(), "secret": None, "notice": idempotency.WITHHELD}

    revoked = client.delete(f"/api/v1/api-keys/{first.json()['id']}", headers={"X-Confirm": "yes"})
    assert revoked.status_code == 204, revoked.text
    again = client.post("/api/v1/api-keys", json=body, headers=headers)
    assert again.json()["secret"] is None
    assert secret not in again.text
    assert secret not in all_text(db_base.database)


@pytest.mark.parametrize("key", ["k" * 256, "has space", "tab\there", "caf\u00e9"])
def test_a_key_the_contract_refuses_is_400_before_anything_is_stored(client, key):
    """The key is stored before request validation runs: checked first (a 256-character
    key used to reach PostgreSQL's varchar(255) as a 500)."""
    response = client.post(
        "/api/v1/agents", json=agent_body(), headers={"Idempotency-Key": key.encode("utf-8")}
    )

    body = assert_problem(response, 400, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["header.Idempotency-Key"]
    assert IdempotencyRecord.select().count() == 0
