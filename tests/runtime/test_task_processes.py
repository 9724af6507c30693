"""Tasks across real processes: two hubs on one PostgreSQL share the queue and run each task
exactly once; a worker killed with SIGKILL loses no task; an approval survives a restart."""

from __future__ import annotations

import signal
from collections import Counter

import httpx
import pytest

from tests.servers import HEADERS, Processes, hub_env, wait_until

pytestmark = pytest.mark.slow  # hub processes: make test runs these, make test-fast does not

# Tasks shared by two hubs of 4 workers each: enough that both hubs claim concurrently all the
# way through (each task's side effect is counted); 500 cost a minute of both cores.
TASKS = 200


@pytest.fixture
def processes():
    group = Processes()
    yield group
    group.stop_all()


@pytest.fixture
def shared_db(pg_server, pg_admin):
    name = "tasks_multi"
    pg_admin.execute(f"CREATE DATABASE {name}")
    yield pg_server.url_for(name)
    pg_admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _post(url: str, path: str, body: dict) -> dict:
    response = httpx.post(f"{url}{path}", json=body, headers=HEADERS, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _tasks(url: str, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        query = {"limit": 200, **params, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{url}/api/v1/tasks", params=query, headers=HEADERS, timeout=30).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_two_hubs_on_one_postgresql_run_each_of_many_tasks_exactly_once(
    processes, shared_db, tmp_path
):
    env = hub_env(shared_db, tmp_path, AETHER_WORKERS="4", AETHER_WORKER_POLL_SECONDS="0.05")
    alpha = processes.serve({**env, "AETHER_INSTANCE_NAME": "alpha"})
    beta = processes.serve({**env, "AETHER_INSTANCE_NAME": "beta"})
    # Each task calls the `notify` tool once: a second execution of any task would leave a
    # second notification with its title (tool side effects are not fenced by the lease).
    agent = {"id": "counter", "name": "Counter", "model": "builtin/scripted", "tools": ["notify"]}
    _post(alpha, "/api/v1/agents", agent)

    for n in range(TASKS):
        script = f'/tool notify {{"title": "task {n}"}}\n/reply done {n}'
        _post(
            alpha if n % 2 else beta,
            "/api/v1/tasks",
            {"agent_id": "counter", "description": script},
        )

    def drained() -> bool:  # one small read per poll, not every task's page
        queue = httpx.get(f"{alpha}/api/v1/queue", headers=HEADERS).json()
        return queue["depth"]["total"] == queue["scheduled"] == queue["running"] == 0

    wait_until(drained, f"{TASKS} tasks run", attempts=1200)
    done = _tasks(beta)
    assert len(done) == TASKS and {t["status"] for t in done} == {"completed"}
    assert all(t["attempts"] == 1 for t in done)
    titles = Counter()
    cursor = None
    while True:
        params = {"limit": 200, "kind": "agent", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{alpha}/api/v1/notifications", params=params, headers=HEADERS).json()
        titles.update(n["title"] for n in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert titles == Counter(f"task {n}" for n in range(TASKS))
    executions = httpx.get(
        f"{beta}/api/v1/tool-executions", params={"limit": 1}, headers=HEADERS
    ).json()
    assert executions["items"][0]["tool"] == "notify"
    workers = httpx.get(f"{alpha}/api/v1/queue", headers=HEADERS).json()["workers"]
    assert sorted(w["name"] for w in workers) == ["alpha", "beta"]


def test_a_worker_killed_mid_task_loses_nothing(processes, shared_db, tmp_path):
    env = hub_env(shared_db, tmp_path, AETHER_WORKER_LEASE_SECONDS="1.5")
    hub = processes.serve({**env, "AETHER_WORKERS": "0"})
    _post(hub, "/api/v1/agents", {"id": "slow", "name": "Slow", "model": "builtin/scripted"})
    first = processes.worker({**env, "AETHER_WORKERS": "1"})
    task = _post(
        hub, "/api/v1/tasks", {"agent_id": "slow", "description": "/sleep 2500\n/reply survived"}
    )
    url = f"{hub}/api/v1/tasks/{task['id']}"
    wait_until(lambda: httpx.get(url, headers=HEADERS).json()["status"] == "running", "running")

    first.send_signal(signal.SIGKILL)
    first.wait()
    processes.worker({**env, "AETHER_WORKERS": "1"})

    wait_until(
        lambda: httpx.get(url, headers=HEADERS).json()["status"] == "completed",
        "completed by the second worker",
        attempts=300,
    )
    body = httpx.get(url, headers=HEADERS).json()
    assert body["result"] == "survived"
    assert body["attempts"] == 2  # the killed attempt counts
    assert [s["attempt"] for s in body["steps"]] == [2]


def test_an_approval_survives_a_restart(processes, tmp_path):
    env = hub_env(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, AETHER_WORKER_POLL_SECONDS="0.1")
    hub = processes.serve(env)
    agent = {"id": "asker", "name": "Asker", "model": "builtin/scripted"}
    _post(hub, "/api/v1/agents", {**agent, "tools": ["http_request"]})
    script = '/tool http_request {"url": "https://example.invalid/"}\n/reply after restart'
    task = _post(hub, "/api/v1/tasks", {"agent_id": "asker", "description": script})
    url = f"/api/v1/tasks/{task['id']}"
    wait_until(
        lambda: httpx.get(hub + url, headers=HEADERS).json()["status"] == "waiting_approval",
        "waiting",
    )
    approval = httpx.get(hub + url, headers=HEADERS).json()["approval_id"]

    processes.stop_all()
    processes.running.clear()
    again = processes.serve(env)
    assert httpx.get(again + url, headers=HEADERS).json()["status"] == "waiting_approval"
    _post(again, f"/api/v1/approvals/{approval}/approve", {})

    wait_until(
        lambda: httpx.get(again + url, headers=HEADERS).json()["status"] == "completed",
        "completed after the restart",
    )
    body = httpx.get(again + url, headers=HEADERS).json()
    assert body["result"] == "after restart"
    assert [s["kind"] for s in body["steps"]] == ["llm", "tool", "llm"]
