"""``POST /api/v1/tasks/batch``: many tasks in one request, all or nothing, idempotent."""

from __future__ import annotations

import pytest

from db.events import Event
from db.tasks import Task
from hub.services import tasks
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent


@pytest.fixture
def settings(settings):
    return settings.replace(workers=0)  # the tests claim by hand


def batch(client, bodies, **kw):
    return client.post("/api/v1/tasks/batch", json={"tasks": bodies}, **kw)


def test_a_batch_queues_every_task_in_order_with_its_events(client):
    agent = make_agent(client)["id"]
    bodies = [{"description": f"job {i}", "agent_id": agent} for i in range(5)]
    bodies[2]["priority"] = "high"

    response = batch(client, bodies)

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [t["description"] for t in items] == [f"job {i}" for i in range(5)]
    assert {t["status"] for t in items} == {"pending"} and items[2]["priority"] == "high"
    assert len({t["id"] for t in items}) == 5
    for item in items:
        assert (
            client.get(f"/api/v1/tasks/{item['id']}").json()["description"] == item["description"]
        )
    created = [e.subject for e in Event.select().where(Event.type == "task.created")]
    assert sorted(created) == sorted(t["id"] for t in items)
    assert tasks.claim("w1", 30.0).id == items[2]["id"]  # claimable like single creates


def test_one_refused_task_queues_none_and_is_named(client):
    agent = make_agent(client)["id"]
    bodies = [{"description": "ok", "agent_id": agent}] * 3 + [
        {"description": "bad", "agent_id": "ghost"}
    ]

    response = batch(client, bodies)

    problem = assert_problem(response, 422, "agent_not_found")
    assert problem["detail"].startswith("body.tasks.3: No agent")
    assert error_fields(response) == {"body.tasks.3.agent_id"}
    assert Task.select().count() == 0
    assert Event.select().where(Event.type == "task.created").count() == 0


def test_a_bad_run_at_is_named_by_its_index(client):
    agent = make_agent(client)["id"]
    bodies = [{"description": "ok", "agent_id": agent}, {"description": "x", "agent_id": agent}]
    bodies[1]["run_at"] = "2026-13-45T99:00:00Z"

    response = batch(client, bodies)

    assert_problem(response, 400, "validation_error")
    assert error_fields(response) == {"body.tasks.1.run_at"}
    assert Task.select().count() == 0


def test_routing_by_capability_spreads_the_batch(client):
    make_agent(client, id="one", capabilities=["triage"])
    make_agent(client, id="two", capabilities=["triage"])

    items = batch(client, [{"description": f"t{i}", "capability": "triage"} for i in range(4)])

    agents = [t["agent_id"] for t in items.json()["items"]]
    assert sorted(agents) == ["one", "one", "two", "two"]


def test_the_batch_size_is_bounded_by_the_contract(client):
    agent = make_agent(client)["id"]
    empty = assert_problem(batch(client, []), 400, "validation_error")
    assert empty["errors"] == [
        {"field": "body.tasks", "message": "has 0 items; at least 1 allowed"}
    ]
    too_many = assert_problem(batch(client, [{"description": "x", "agent_id": agent}] * 1001), 400)
    # The message counts; it does not repeat the 1,001 tasks back.
    assert too_many["detail"] == "body.tasks: has 1001 items; at most 1000 allowed"
    assert Task.select().count() == 0


def test_a_retried_batch_replays_and_queues_nothing_more(client):
    agent = make_agent(client)["id"]
    bodies = [{"description": f"job {i}", "agent_id": agent} for i in range(3)]
    headers = {"Idempotency-Key": "batch-1"}

    first = batch(client, bodies, headers=headers)
    again = batch(client, bodies, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert Task.select().count() == 3
    other = batch(client, bodies[:1], headers=headers)
    assert_problem(other, 409, "idempotency_key_reused")


def test_a_viewer_cannot_queue_a_batch(client, keyring):
    from tests.conftest import auth

    agent = make_agent(client)["id"]
    response = batch(
        client, [{"description": "x", "agent_id": agent}], headers=auth(keyring["viewer"])
    )
    assert_problem(response, 403)
    assert Task.select().count() == 0
