"""Workflows across real processes: a run survives a restart while it waits for a person and
a `kill -9` of its hub mid-step (the step runs again, the completed ones never); two hubs on
one PostgreSQL run many workflows with every step attempt exactly once."""

from __future__ import annotations

import concurrent.futures
import signal
from collections import Counter

import httpx
import pytest

from tests.servers import HEADERS, Processes, hub_env, wait_until

pytestmark = pytest.mark.slow  # hub processes: make test runs these, make test-fast does not

RUNS = 200  # workflows of 3 steps shared by two hubs: 600 step tasks


@pytest.fixture
def processes():
    group = Processes()
    yield group
    group.stop_all()


@pytest.fixture
def shared_db(pg_server, pg_admin):
    name = "workflows_multi"
    pg_admin.execute(f"CREATE DATABASE {name}")
    yield pg_server.url_for(name)
    pg_admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _post(url: str, path: str, body: dict | None = None) -> dict:
    response = httpx.post(f"{url}{path}", json=body or {}, headers=HEADERS, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _get(url: str, path: str, **params) -> dict:
    return httpx.get(f"{url}{path}", params=params, headers=HEADERS, timeout=30).json()


def _all(url: str, path: str, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        page = _get(url, path, limit=200, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _step(url: str, run_id: str, step_id: str) -> dict:
    run = _get(url, f"/api/v1/workflow-runs/{run_id}")
    return next((s for s in run["steps"] if s["step_id"] == step_id), {})


def _titles(url: str) -> Counter:
    return Counter(n["title"] for n in _all(url, "/api/v1/notifications", kind="agent"))


def test_a_run_survives_a_restart_while_waiting_and_a_kill_9_mid_step(processes, tmp_path):
    env = hub_env(
        f"sqlite:///{tmp_path / 'hub.db'}",
        tmp_path,
        AETHER_WORKER_POLL_SECONDS="0.1",
        AETHER_WORKER_LEASE_SECONDS="1.5",
    )
    hub = processes.serve(env)
    _post(hub, "/api/v1/agents", {"id": "sleeper", "name": "Sleeper", "model": "builtin/scripted"})
    _post(
        hub,
        "/api/v1/workflows",
        {
            "id": "durable",
            "steps": [
                {"id": "ask", "kind": "approval", "guards": "before"},
                {
                    "id": "before",
                    "kind": "tool",
                    "tool": "notify",
                    "arguments": {"title": "before"},
                },
                {
                    "id": "slow",
                    "kind": "agent",
                    "agent_id": "sleeper",
                    "prompt": "/sleep 2500\n/reply slept",
                },
                {"id": "after", "kind": "tool", "tool": "notify", "arguments": {"title": "after"}},
            ],
        },
    )
    run = _post(hub, "/api/v1/workflows/durable/runs", {"input": {}})
    wait_until(lambda: _step(hub, run["id"], "ask").get("status") == "waiting_approval", "asked")
    approval = _step(hub, run["id"], "ask")["approval_id"]

    processes.stop_all()  # a clean restart while the run waits: nothing holds it but rows
    processes.running.clear()
    hub = processes.serve(env)
    assert _step(hub, run["id"], "ask")["status"] == "waiting_approval"
    _post(hub, f"/api/v1/approvals/{approval}/approve")
    wait_until(lambda: _step(hub, run["id"], "slow").get("status") == "running", "mid-step")

    victim = processes.running[-1]
    victim.send_signal(signal.SIGKILL)  # the hub dies in the middle of the agent step
    victim.wait()
    hub = processes.serve(env)
    wait_until(
        lambda: _get(hub, f"/api/v1/workflow-runs/{run['id']}")["status"] == "completed",
        "completed after the kill",
        attempts=400,
    )
    done = _get(hub, f"/api/v1/workflow-runs/{run['id']}")
    by_id = {s["step_id"]: s for s in done["steps"]}
    assert by_id["slow"]["attempts"] == 2  # the killed attempt counts, and ran again
    assert by_id["slow"]["output"] == "slept"
    assert by_id["before"]["attempts"] == by_id["after"]["attempts"] == 1
    assert _titles(hub) == Counter({"before": 1, "after": 1})  # each completed step ran once


def test_two_hubs_on_one_postgresql_run_every_step_attempt_exactly_once(
    processes, shared_db, tmp_path
):
    env = hub_env(shared_db, tmp_path, AETHER_WORKERS="4", AETHER_WORKER_POLL_SECONDS="0.05")
    alpha = processes.serve({**env, "AETHER_INSTANCE_NAME": "alpha"})
    beta = processes.serve({**env, "AETHER_INSTANCE_NAME": "beta"})
    steps = [
        {
            "id": f"s{k}",
            "kind": "tool",
            "tool": "notify",
            "arguments": {"title": f"{{{{ input.n }}}} s{k}"},
        }
        for k in range(3)
    ]
    _post(alpha, "/api/v1/workflows", {"id": "three", "steps": steps})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # the hubs run steps meanwhile
        list(
            pool.map(
                lambda n: _post(
                    alpha if n % 2 else beta, "/api/v1/workflows/three/runs", {"input": {"n": n}}
                ),
                range(RUNS),
            )
        )

    def finished() -> bool:
        running = _get(alpha, "/api/v1/workflow-runs", status="running", limit=1)["items"]
        return not running

    wait_until(finished, f"{RUNS} runs", attempts=1800)
    runs = _all(beta, "/api/v1/workflow-runs")
    assert len(runs) == RUNS and {r["status"] for r in runs} == {"completed"}
    for run in runs[:: RUNS // 20]:  # a sample read in full: every step one attempt
        detail = _get(alpha, f"/api/v1/workflow-runs/{run['id']}")
        assert [(s["step_id"], s["attempts"]) for s in detail["steps"]] == [
            ("s0", 1),
            ("s1", 1),
            ("s2", 1),
        ]
    tasks = _all(alpha, "/api/v1/tasks")
    assert len(tasks) == 3 * RUNS and all(t["attempts"] == 1 for t in tasks)
    assert _titles(alpha) == Counter(f"{n} s{k}" for n in range(RUNS) for k in range(3))
    claimed_by = Counter(
        e["payload"]["worker"].rsplit("/", 1)[0]
        for e in _all(beta, "/api/v1/events", type="task.started")
    )
    assert len(claimed_by) == 2, claimed_by  # both hubs took steps
