"""Two hub processes on one PostgreSQL: one registry of instances, shared settings and data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from tests.servers import free_port, wait_until

pytestmark = pytest.mark.slow  # hub processes: make test runs these, make test-fast does not

TOKEN = "multi-process-admin-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def two_hubs(pg_server, pg_admin, tmp_path):
    pg_admin.execute("CREATE DATABASE multi")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AETHER_")},
        "AETHER_DATABASE_URL": pg_server.url_for("multi"),
        "AETHER_ADMIN_TOKEN": TOKEN,
        "AETHER_HEARTBEAT_SECONDS": "0.2",
        "AETHER_LOG_LEVEL": "warning",
        "AETHER_DATA_DIR": str(tmp_path),
    }
    hubs = []
    for name in ("alpha", "beta"):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)],
            env={**env, "AETHER_INSTANCE_NAME": name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        hubs.append((process, f"http://127.0.0.1:{port}"))
    try:
        for _, url in hubs:
            wait_until(lambda url=url: httpx.get(f"{url}/health/ready").status_code == 200, url)
        yield [url for _, url in hubs], [process for process, _ in hubs]
    finally:
        for process, _ in hubs:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in hubs:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        pg_admin.execute("DROP DATABASE IF EXISTS multi WITH (FORCE)")


def test_two_processes_share_instances_settings_and_data(two_hubs):
    (alpha, beta), processes = two_hubs

    instances = httpx.get(f"{alpha}/api/v1/runtime/instances", headers=HEADERS).json()["items"]
    assert sorted((i["name"], i["state"]) for i in instances) == [
        ("alpha", "running"),
        ("beta", "running"),
    ]

    created = httpx.post(
        f"{alpha}/api/v1/agents",
        headers=HEADERS,
        json={"id": "shared", "name": "Shared", "model": "builtin/echo"},
    )
    assert created.status_code == 201
    assert httpx.get(f"{beta}/api/v1/agents/shared", headers=HEADERS).json() == created.json()

    changed = httpx.patch(
        f"{alpha}/api/v1/config",
        headers={**HEADERS, "X-Confirm": "yes"},
        json={"rate_limit_per_minute": 1234},
    )
    assert changed.status_code == 200

    def beta_limit() -> int:
        config = httpx.get(f"{beta}/api/v1/config", headers=HEADERS).json()
        return config["settings"]["rate_limit_per_minute"]

    wait_until(lambda: beta_limit() == 1234, "beta to pick up the setting at its heartbeat")

    processes[1].send_signal(signal.SIGTERM)
    processes[1].wait(timeout=15)
    states = {
        i["name"]: i["state"]
        for i in httpx.get(f"{alpha}/api/v1/runtime/instances", headers=HEADERS).json()["items"]
    }
    assert states == {"alpha": "running", "beta": "stopped"}

    verdict = httpx.get(f"{alpha}/api/v1/audit-log/verify", headers=HEADERS).json()
    assert verdict["valid"] is True and verdict["checked"] == 2


def test_events_fan_out_to_every_process_and_are_processed_exactly_once(two_hubs):
    """An event pushed to one hub reaches the SSE clients of the other (LISTEN/NOTIFY), and
    the durable processor of the two hubs together fires a trigger once per event."""
    import json

    (alpha, beta), _ = two_hubs
    agent = {"id": "fanout", "name": "Fan-out", "model": "builtin/echo"}
    assert httpx.post(f"{alpha}/api/v1/agents", headers=HEADERS, json=agent).status_code == 201
    trigger = {
        "name": "One task per ping",
        "event_type": "fanout.*",
        "action": {
            "kind": "create_task",
            "agent_id": "fanout",
            "description": "{{ event.type }} {{ event.payload.n }}",
        },
    }
    assert httpx.post(f"{alpha}/api/v1/triggers", headers=HEADERS, json=trigger).status_code == 201

    pushed = []
    with httpx.stream(
        "GET",
        f"{beta}/api/v1/events/stream",
        params={"types": "fanout.*"},
        headers=HEADERS,
        timeout=httpx.Timeout(10.0, read=60.0),
    ) as stream:
        assert stream.status_code == 200
        for n in range(20):  # to both hubs, so that both write and both process
            target = alpha if n % 2 else beta
            event = {"type": "fanout.ping", "payload": {"n": n}}
            response = httpx.post(f"{target}/api/v1/events", headers=HEADERS, json=event)
            assert response.status_code == 201
            pushed.append(response.json()["id"])
        done = {"type": "fanout.done", "payload": {"n": 20}}
        pushed.append(httpx.post(f"{alpha}/api/v1/events", headers=HEADERS, json=done).json()["id"])
        received = []
        for line in stream.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line[6:])["id"])
                if received[-1] == pushed[-1]:
                    break
    assert received == sorted(pushed)

    def tasks() -> list[dict]:
        url = f"{alpha}/api/v1/tasks"
        params = {"agent_id": "fanout", "limit": 100}
        return httpx.get(url, headers=HEADERS, params=params).json()["items"]

    # Events are processed in id order: once the last one's task exists, all were processed.
    wait_until(lambda: any(t["description"] == "fanout.done 20" for t in tasks()), "the last task")
    descriptions = sorted(t["description"] for t in tasks())
    assert descriptions == sorted([f"fanout.ping {n}" for n in range(20)] + ["fanout.done 20"])
