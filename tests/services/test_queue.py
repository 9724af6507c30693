"""The task queue's state machine, driven by hand (no workers run in these tests): claim order,
leases, backoff, dead letters, cancel, retry, fencing, timeouts, and the queue report."""

from __future__ import annotations

import asyncio

import pytest

from db.tasks import Task
from hub.runtime import instance
from hub.runtime.worker import WorkerPool
from hub.services import tasks
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent, make_task

LEASE = 30.0


@pytest.fixture
def settings(settings):
    return settings.replace(workers=0, task_backoff_seconds=2.0, task_backoff_max_seconds=5.0)


def claim(worker: str = "w1") -> Task | None:
    return tasks.claim(worker, LEASE)


def run(task: Task) -> None:
    """One attempt of ``task`` on this process' runtime, as a worker would run it."""
    asyncio.run(WorkerPool(instance.current(), 1).execute(task))


def get(client, task_id: str) -> dict:
    return client.get(f"/api/v1/tasks/{task_id}").json()


def test_claim_takes_the_highest_priority_then_the_oldest(client, clock):
    agent = make_agent(client)["id"]
    low = make_task(client, agent_id=agent, priority="low")
    normal_1 = make_task(client, agent_id=agent)
    clock.advance(seconds=1)
    normal_2 = make_task(client, agent_id=agent)
    high = make_task(client, agent_id=agent, priority="high")

    order = [claim().id for _ in range(4)]

    assert order == [high["id"], normal_1["id"], normal_2["id"], low["id"]]
    assert claim() is None


def test_a_task_is_not_claimed_before_run_at(client, clock):
    agent = make_agent(client)["id"]
    task = make_task(client, agent_id=agent, run_at="2026-01-01T12:10:00Z")
    assert task["run_at"] == "2026-01-01T12:10:00.000Z"
    assert claim() is None
    assert client.get("/api/v1/queue").json()["scheduled"] == 1

    clock.advance(minutes=10)

    assert claim().id == task["id"]


def test_a_claimed_task_is_running_with_a_lease_and_one_attempt(client, clock):
    task = make_task(client, agent_id=make_agent(client)["id"])

    claimed = claim("w1")

    body = get(client, task["id"])
    assert body["status"] == "running" and body["attempts"] == 1
    assert body["started_at"] == "2026-01-01T12:00:00.000Z"
    assert claimed.lease_owner == "w1"
    assert claim("w2") is None  # the lease holds


def test_a_finished_task_reports_how_long_it_took(client, clock):
    task = make_task(client, agent_id=make_agent(client)["id"])
    assert get(client, task["id"])["duration_ms"] is None  # pending
    claimed = claim()
    clock.advance(seconds=90, microseconds=250_900)
    assert get(client, task["id"])["duration_ms"] is None  # running

    run(claimed)

    body = get(client, task["id"])
    assert body["status"] == "completed"
    assert (body["started_at"], body["completed_at"]) == (
        "2026-01-01T12:00:00.000Z",
        "2026-01-01T12:01:30.250Z",
    )
    assert body["duration_ms"] == 90_250  # what the two timestamps say


def test_a_task_cancelled_before_it_started_has_no_duration(client):
    task = make_task(client, agent_id=make_agent(client)["id"])
    client.post(f"/api/v1/tasks/{task['id']}/cancel")
    body = get(client, task["id"])
    assert (body["status"], body["started_at"], body["duration_ms"]) == ("cancelled", None, None)


def test_an_expired_lease_makes_the_task_claimable_again(client, clock):
    task = make_task(client, agent_id=make_agent(client)["id"])
    first = claim("dead-worker")

    clock.advance(seconds=LEASE + 1)
    second = claim("w2")

    assert second.id == task["id"] and second.attempts == 2 and second.lease_owner == "w2"
    # The first worker comes back: its lease is gone, nothing it writes counts.
    assert tasks.complete(first, "late", lambda: None) is False
    run(second)
    done = get(client, task["id"])
    assert done["status"] == "completed" and done["result"] == "Echo: Summarise the week."


def test_renewing_keeps_the_lease(client, clock):
    make_task(client, agent_id=make_agent(client)["id"])
    held = claim("w1")
    for _ in range(3):
        clock.advance(seconds=LEASE / 2)
        assert tasks.renew(held, LEASE) == (True, False)
    assert claim("w2") is None


def test_a_lease_lost_on_the_last_attempt_fails_the_task(client, clock):
    task = make_task(client, agent_id=make_agent(client)["id"], max_attempts=1)
    claim("dead-worker")
    clock.advance(seconds=LEASE + 1)

    assert claim("w2") is None

    body = get(client, task["id"])
    assert body["status"] == "failed" and body["error"]["code"] == "lease_expired"
    [letter] = client.get("/api/v1/dead-letters").json()["items"]
    assert letter["subject_id"] == task["id"] and letter["kind"] == "task"


def test_a_failed_attempt_backs_off_exponentially_then_dies(client, clock):
    agent = make_agent(client, model="builtin/scripted")["id"]
    task = make_task(client, agent_id=agent, description="/error 503", max_attempts=3)

    run(claim())
    body = get(client, task["id"])
    assert body["status"] == "pending" and body["attempts"] == 1
    assert body["error"]["code"] == "provider_error"
    assert body["run_at"] == "2026-01-01T12:00:02.000Z"  # 2 s
    assert claim() is None

    clock.advance(seconds=2)
    run(claim())
    assert get(client, task["id"])["run_at"] == "2026-01-01T12:00:06.000Z"  # then 4 s

    clock.advance(seconds=4)
    run(claim())
    body = get(client, task["id"])
    assert body["status"] == "failed" and body["attempts"] == 3
    assert [s["attempt"] for s in body["steps"]] == [1, 2, 3]
    assert client.get("/api/v1/dead-letters/depth").json() == {
        "open": 1,
        "by_kind": {"task": 1, "delivery": 0},
    }
    [note] = client.get("/api/v1/notifications", params={"kind": "task_failed"}).json()["items"]
    assert note["subject"] == task["id"] and note["severity"] == "error"


def test_a_client_error_from_the_model_is_not_retried(client):
    agent = make_agent(client, model="builtin/scripted")["id"]
    task = make_task(client, agent_id=agent, description="/error 400")
    run(claim())
    body = get(client, task["id"])
    assert body["status"] == "failed" and body["attempts"] == 1


def test_an_attempt_longer_than_timeout_seconds_fails(client):
    agent = make_agent(client, model="builtin/scripted")["id"]
    task = make_task(
        client, agent_id=agent, description="/sleep 5000", timeout_seconds=1, max_attempts=1
    )
    run(claim())
    body = get(client, task["id"])
    assert body["status"] == "failed" and body["error"]["code"] == "timeout"


def test_cancel_a_pending_task_at_once(client):
    task = make_task(client, agent_id=make_agent(client)["id"])

    response = client.post(f"/api/v1/tasks/{task['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert claim() is None
    assert_problem(client.post(f"/api/v1/tasks/{task['id']}/cancel"), 409, "task_finished")


def test_cancel_a_running_task_stops_it_before_its_next_step(client):
    agent = make_agent(client, model="builtin/scripted", tools=["current_time"])["id"]
    task = make_task(client, agent_id=agent, description="/tool current_time\n/reply x")
    held = claim()

    response = client.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert response.json()["status"] == "running" and response.json()["cancel_requested"]
    run(held)

    body = get(client, task["id"])
    assert body["status"] == "cancelled"
    assert body["steps"] == []  # the model was never called


def test_retry_only_from_failed_or_cancelled(client):
    task = make_task(client, agent_id=make_agent(client)["id"])
    assert_problem(client.post(f"/api/v1/tasks/{task['id']}/retry"), 409, "task_not_retryable")
    client.post(f"/api/v1/tasks/{task['id']}/cancel")

    response = client.post(f"/api/v1/tasks/{task['id']}/retry")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pending" and body["attempts"] == 0 and body["error"] is None
    assert claim().id == task["id"]


def test_dead_letter_retry_needs_confirmation_and_requeues_the_task(client):
    agent = make_agent(client, model="builtin/scripted")["id"]
    task = make_task(client, agent_id=agent, description="/error 400")
    run(claim())
    [letter] = client.get("/api/v1/dead-letters", params={"status": "open"}).json()["items"]
    url = f"/api/v1/dead-letters/{letter['id']}/retry"

    assert_problem(client.post(url), 428, "confirmation_required")
    response = client.post(url, headers={"X-Confirm": "yes"})

    assert response.status_code == 200 and response.json()["status"] == "retried"
    assert get(client, task["id"])["status"] == "pending"
    assert client.get("/api/v1/dead-letters/depth").json()["open"] == 0
    again = client.post(url, headers={"X-Confirm": "yes"})
    assert_problem(again, 409, "not_open")


def test_discard_a_dead_letter(client):
    agent = make_agent(client, model="builtin/scripted")["id"]
    make_task(client, agent_id=agent, description="/error 400")
    run(claim())
    [letter] = client.get("/api/v1/dead-letters").json()["items"]

    response = client.post(f"/api/v1/dead-letters/{letter['id']}/discard")

    assert response.status_code == 200 and response.json()["status"] == "discarded"
    assert response.json()["resolved_at"] is not None
    assert_problem(client.post(f"/api/v1/dead-letters/{letter['id']}/discard"), 409, "not_open")
    assert_problem(client.post("/api/v1/dead-letters/dlq_nope/discard"), 404)


def test_the_queue_report(client, clock):
    agent = make_agent(client)["id"]
    make_task(client, agent_id=agent, priority="high")
    make_task(client, agent_id=agent)
    make_task(client, agent_id=agent)
    make_task(client, agent_id=agent, run_at="2026-01-02T00:00:00Z")
    claim()  # the high one runs
    clock.advance(seconds=90)

    report = client.get("/api/v1/queue").json()

    assert report["depth"] == {"high": 0, "normal": 2, "low": 0, "total": 2}
    assert report["scheduled"] == 1 and report["running"] == 1
    assert report["waiting_approval"] == 0
    assert report["oldest_waiting_seconds"] == 90.0
    assert report["workers"] == []  # no process runs workers here


def test_routing_by_capability_prefers_the_least_busy_agent(client):
    make_agent(client, id="busy", capabilities=["triage"])
    make_agent(client, id="free", capabilities=["triage"])
    make_agent(client, id="paused", capabilities=["triage"], status="paused")
    make_task(client, agent_id="busy")

    task = make_task(client, capability="triage")

    assert task["agent_id"] == "free" and task["capability"] == "triage"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"capability": "nobody-does-this"}, "no_agent_for_capability", "body.capability"),
        ({"agent_id": "ghost"}, "agent_not_found", "body.agent_id"),
        ({}, "no_route", "body.agent_id"),
    ],
)
def test_a_task_nobody_can_do_is_422(client, body, code, field):
    response = client.post("/api/v1/tasks", json={"description": "x", **body})
    assert_problem(response, 422, code)
    assert error_fields(response) == {field}


def test_list_tasks_filters_and_pages(client):
    agent = make_agent(client)["id"]
    other = make_agent(client)["id"]
    ids = [make_task(client, agent_id=agent)["id"] for _ in range(3)]
    make_task(client, agent_id=other, priority="high")

    first = client.get("/api/v1/tasks", params={"agent_id": agent, "limit": 2}).json()
    second = client.get(
        "/api/v1/tasks", params={"agent_id": agent, "cursor": first["next_cursor"]}
    ).json()

    assert [t["id"] for t in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert "steps" not in first["items"][0]
    high = client.get("/api/v1/tasks", params={"priority": "high"}).json()["items"]
    assert [t["agent_id"] for t in high] == [other]
    assert client.get("/api/v1/tasks", params={"status": "completed"}).json()["items"] == []


def test_unknown_task_is_404(client):
    assert_problem(client.get("/api/v1/tasks/tsk_nope"), 404, "task_not_found")
    assert_problem(client.post("/api/v1/tasks/tsk_nope/cancel"), 404, "task_not_found")


def test_a_task_created_by_a_viewer_is_refused(client, keyring):
    from tests.conftest import auth

    response = client.post(
        "/api/v1/tasks", json={"description": "x"}, headers=auth(keyring["viewer"])
    )
    assert_problem(response, 403)


def test_stopping_the_pool_hands_held_tasks_back(client):
    task = make_task(client, agent_id=make_agent(client)["id"])
    pool = WorkerPool(instance.current(), 1)
    held = claim("w1")
    pool.in_hand[held.id] = held

    asyncio.run(pool.stop())

    body = get(client, task["id"])
    assert body["status"] == "pending" and body["attempts"] == 0
    assert instance.current() is not None


def test_stopping_the_pool_mid_attempt_ends_every_worker(client):
    """A worker cancelled while it runs an attempt must end (not swallow the cancel and go
    on claiming), and the task goes back to the queue."""
    agent = make_agent(client, model="builtin/scripted")["id"]
    task = make_task(client, agent_id=agent, description="/sleep 5000\n/reply late")

    async def scenario() -> None:
        pool = WorkerPool(instance.current(), 1)
        await pool.start()
        for _ in range(200):
            if pool.in_hand:
                break
            await asyncio.sleep(0.02)
        assert pool.in_hand, "the worker never claimed the task"
        await asyncio.wait_for(pool.stop(), 10)

    asyncio.run(scenario())

    body = get(client, task["id"])
    assert body["status"] == "pending" and body["attempts"] == 0
