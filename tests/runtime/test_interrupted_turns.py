"""Turns cut off by a crash are recovered (issue 13, break 11): a turn left ``running`` by a
dead hub process becomes ``failed`` with ``error.code = interrupted``, and ``stop`` answers
truthfully. Once with a real hub killed with SIGKILL mid-reply."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

import httpx
import pytest

from db import system
from db.base import new_id, utcnow, write_transaction
from db.sessions import Message, Turn
from tests.factories import wait_for
from tests.servers import HEADERS, Processes, hub_env


def new_session(client) -> str:
    agent = {"id": "slow", "name": "Slow", "model": "builtin/scripted"}
    assert client.post("/api/v1/agents", json=agent).status_code in (201, 409)
    return client.post("/api/v1/sessions", json={"agent_id": "slow"}).json()["id"]


def dead_instance() -> str:
    """An instance row whose process has ended (a child that already exited)."""
    child = subprocess.Popen(["true"])
    child.wait()
    instance_id = new_id("ins")
    with write_transaction():
        system.Instance.create(
            id=instance_id,
            name="gone",
            hostname=os.uname().nodename,
            pid=child.pid,
            version="0",
            started_at=utcnow(),
            heartbeat_at=utcnow(),  # it beat just now: only its process tells it is gone
        )
    return instance_id


def test_a_turn_whose_process_died_is_interrupted_at_the_next_beat(app, client):
    session = new_session(client)
    reply = client.post(f"/api/v1/sessions/{session}/messages", json={"content": "/reply hi"})
    assert reply.status_code == 200, reply.text
    turn = Turn.get()
    with write_transaction():  # as if a dead process were still generating it
        Turn.update(status="running", instance_id=dead_instance()).execute()
        Message.update(status="streaming").where(Message.id == turn.assistant_message_id).execute()

    app.runtime.beat()

    after = client.get(f"/api/v1/sessions/{session}/turns").json()["items"][0]
    assert after["status"] == "failed"
    assert after["error"]["code"] == "interrupted"
    message = Message.get_by_id(turn.assistant_message_id)
    assert (message.status, message.content) == ("stopped", "hi")  # the partial text stays
    assert client.post(f"/api/v1/sessions/{session}/stop").json() == {
        "stopped": False,
        "turn_id": None,
    }


def test_stop_recovers_a_turn_a_dead_process_left_running(app, client):
    session = new_session(client)
    client.post(f"/api/v1/sessions/{session}/messages", json={"content": "/reply hi"})
    with write_transaction():
        Turn.update(status="running", instance_id=dead_instance()).execute()

    stopped = client.post(f"/api/v1/sessions/{session}/stop").json()

    assert stopped == {"stopped": True, "turn_id": Turn.get().id}
    assert Turn.get().status == "failed"


def test_a_turn_of_a_live_instance_is_left_alone(app, client):
    session = new_session(client)
    client.post(f"/api/v1/sessions/{session}/messages", json={"content": "/reply hi"})
    with write_transaction():  # another live process (this test's own pid) generates it
        instance_id = dead_instance()
        system.Instance.update(pid=os.getpid()).where(system.Instance.id == instance_id).execute()
        Turn.update(status="running", instance_id=instance_id).execute()

    app.runtime.beat()

    assert Turn.get().status == "running"
    stopped = client.post(f"/api/v1/sessions/{session}/stop").json()
    assert stopped == {"stopped": False, "turn_id": Turn.get().id}


@pytest.mark.slow
def test_a_hub_killed_mid_reply_leaves_no_turn_running(tmp_path):
    hubs = Processes()
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    try:
        url = hubs.serve(hub_env(database, tmp_path / "data"))
        client = httpx.Client(base_url=url, headers=HEADERS, timeout=60)
        session = new_session(client)
        body = {"content": "/sleep 60000\n/reply too late"}
        threading.Thread(
            target=lambda: _ignore(client.post, f"/api/v1/sessions/{session}/messages", body),
            daemon=True,
        ).start()
        wait_for(
            lambda: client.get(f"/api/v1/sessions/{session}/turns").json()["items"],
            lambda items: items and items[0]["status"] == "running",
        )
        os.kill(hubs.running[0].pid, signal.SIGKILL)
        hubs.running[0].wait()

        url = hubs.serve(hub_env(database, tmp_path / "data"))
        client = httpx.Client(base_url=url, headers=HEADERS, timeout=60)
        (turn,) = client.get(f"/api/v1/sessions/{session}/turns").json()["items"]
        assert turn["status"] == "failed" and turn["error"]["code"] == "interrupted"
        stop = client.post(f"/api/v1/sessions/{session}/stop").json()
        assert stop == {"stopped": False, "turn_id": None}
        again = client.post(f"/api/v1/sessions/{session}/messages", json={"content": "hello"})
        assert again.status_code == 200, again.text  # the session is usable again
    finally:
        hubs.stop_all()


def _ignore(call, path: str, body: dict) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the hub is killed mid-request
        call(path, json=body)
