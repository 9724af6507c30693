"""Triggers: CRUD with whole bodies, validation, and firing through ``consume`` (the durable
event processor's entry point): templated tasks carrying the event's trace, filters, errors
recorded on the trigger, the loop guards; and once end to end through the processor."""

from __future__ import annotations

import pytest
from peewee import fn

from db.base import write_transaction
from db.events import Event
from hub.events import log as events
from hub.runtime import processor, scheduler
from hub.services import triggers
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent, wait_for

URL = "/api/v1/triggers"
NOW = "2026-01-01T12:00:00.000Z"


@pytest.fixture
def settings(settings):
    return settings.replace(workers=0)


@pytest.fixture(autouse=True)
def parked(request, monkeypatch):
    """The background event processor and scheduler stay idle (the tests call ``consume``
    themselves), unless a test asks for ``live``."""
    if "live" not in request.fixturenames:
        monkeypatch.setattr(processor, "process_batch", lambda limit=200: 0)

    async def idle(runtime):
        return None

    monkeypatch.setattr(scheduler, "run_forever", idle)


def trigger_body(agent_id: str, **overrides) -> dict:
    body = {
        "name": "Issue triage",
        "event_type": "issue.*",
        "filter": '.payload.action == "opened"',
        "action": {
            "kind": "create_task",
            "agent_id": agent_id,
            "description": "Triage: {{ event.payload.issue.title }}",
            "priority": "high",
        },
    }
    body.update(overrides)
    return body


def make_trigger(client, agent_id: str, **overrides) -> dict:
    response = client.post(URL, json=trigger_body(agent_id, **overrides))
    assert response.status_code == 201, response.text
    return response.json()


def emit(type_: str, payload: dict, *, trace_id: str | None = None, **fields) -> Event:
    with write_transaction():
        emitted = events.emit(type_, payload=payload, trace_id=trace_id, **fields)
    return Event.get_by_id(emitted.id)


def consume(*rows: Event) -> None:
    steps = triggers.plan(list(rows))  # the user programs run outside the transaction
    with write_transaction():
        triggers.apply(steps)


def events_of(type_: str) -> list[Event]:
    return list(Event.select().where(Event.type == type_).order_by(Event.id))


def tasks(client) -> list[dict]:
    return client.get("/api/v1/tasks").json()["items"]


def opened(title: str = "Crash on start", **fields) -> Event:
    return emit(
        "issue.created",
        {"action": "opened", "issue": {"title": title, "number": 7}},
        source="github",
        subject="acme/rocket#7",
        **fields,
    )


# --- CRUD --------------------------------------------------------------------------------


def test_create_answers_the_whole_trigger(client, clock):
    agent = make_agent(client)["id"]

    response = client.post(URL, json=trigger_body(agent))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("trg_")
    assert response.headers["location"] == f"{URL}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body == {
        "id": body["id"],
        "name": "Issue triage",
        "event_type": "issue.*",
        "filter": '.payload.action == "opened"',
        "action": {
            "kind": "create_task",
            "agent_id": agent,
            "description": "Triage: {{ event.payload.issue.title }}",
            "priority": "high",
        },
        "enabled": True,
        "fired_count": 0,
        "error_count": 0,
        "last_fired_at": None,
        "last_error": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    got = client.get(f"{URL}/{body['id']}")
    assert got.json() == body and got.headers["etag"] == '"1"'
    assert client.get(URL).json() == {"items": [body], "next_cursor": None}
    (created,) = events_of("trigger.created")
    assert created.subject == body["id"]
    assert created.payload == {
        "trigger_id": body["id"],
        "name": "Issue triage",
        "event_type": "issue.*",
        "enabled": True,
    }


def test_a_trigger_by_capability_needs_no_filter(client, clock):
    body = {
        "name": "Deploys",
        "event_type": "deployment.completed",
        "action": {"kind": "create_task", "capability": "ops", "description": "Check it"},
        "enabled": False,
    }
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["filter"] is None and created["enabled"] is False
    assert created["action"] == body["action"]


def test_list_is_newest_first_and_pages(client):
    agent = make_agent(client)["id"]
    first = make_trigger(client, agent, name="one")
    second = make_trigger(client, agent, name="two")

    page_1 = client.get(URL, params={"limit": 1}).json()
    page_2 = client.get(URL, params={"limit": 1, "cursor": page_1["next_cursor"]}).json()

    assert [t["id"] for t in page_1["items"]] == [second["id"]]
    assert page_2 == {"items": [first], "next_cursor": None}


def test_put_replaces_the_whole_definition_and_keeps_the_counters(client, clock):
    agent = make_agent(client)["id"]
    trigger = make_trigger(client, agent)
    consume(opened())
    clock.advance(minutes=5)
    replacement = {
        "name": "Any issue",
        "event_type": "issue.created",
        "action": {"kind": "create_task", "agent_id": agent, "description": "Look"},
    }

    response = client.put(f"{URL}/{trigger['id']}", json=replacement, headers={"If-Match": '"1"'})

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json() == {
        **trigger,
        "name": "Any issue",
        "event_type": "issue.created",
        "filter": None,  # absent from a replacement: gone
        "action": {"kind": "create_task", "agent_id": agent, "description": "Look"},
        "fired_count": 1,
        "last_fired_at": NOW,
        "updated_at": "2026-01-01T12:05:00.000Z",
    }
    assert client.get(f"{URL}/{trigger['id']}").json() == response.json()


def test_put_with_a_stale_etag_is_412(client):
    trigger = make_trigger(client, make_agent(client)["id"])
    body = trigger_body(trigger["action"]["agent_id"], name="renamed")
    assert client.put(f"{URL}/{trigger['id']}", json=body).status_code == 200  # no If-Match

    response = client.put(f"{URL}/{trigger['id']}", json=body, headers={"If-Match": '"1"'})

    assert_problem(response, 412, "etag_mismatch")


def test_delete(client):
    trigger = make_trigger(client, make_agent(client)["id"])

    assert client.delete(f"{URL}/{trigger['id']}").status_code == 204

    assert_problem(client.get(f"{URL}/{trigger['id']}"), 404, "trigger_not_found")
    assert_problem(client.delete(f"{URL}/{trigger['id']}"), 404, "trigger_not_found")
    assert client.get(URL).json() == {"items": [], "next_cursor": None}
    assert [e.payload["trigger_id"] for e in events_of("trigger.deleted")] == [trigger["id"]]


def test_unknown_triggers_are_404(client):
    body = trigger_body("nobody")
    assert_problem(client.get(f"{URL}/trg_missing"), 404, "trigger_not_found")
    assert_problem(client.put(f"{URL}/trg_missing", json=body), 404, "trigger_not_found")


@pytest.mark.parametrize(
    ("action", "field"),
    [
        ({"kind": "create_task", "agent_id": "a"}, "body.action.description"),
        ({"kind": "start_workflow", "agent_id": "a", "description": "x"}, "body.action.agent_id"),
        ({"kind": "start_workflow"}, "body.action.workflow_id"),
        (
            {"kind": "create_task", "description": "x", "workflow_id": "w"},
            "body.action.workflow_id",
        ),
    ],
)
def test_an_action_with_the_members_of_another_kind_is_422(client, action, field):
    response = client.post(URL, json={"name": "t", "event_type": "a.b", "action": action})
    assert_problem(response, 422, "invalid_action")
    assert error_fields(response) == {field}


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"filter": ".payload.action =="}, "invalid_filter", "body.filter"),
        ({"description": "Hi {{ event.payload"}, "invalid_template", "body.action.description"),
        ({"description": "{% if x %}unclosed"}, "invalid_template", "body.action.description"),
        ({"agent_id": "ghost"}, "agent_not_found", "body.action.agent_id"),
        ({"agent_id": None}, "no_route", "body.action.agent_id"),
        ({"capability": "poetry"}, "capability_mismatch", "body.action.capability"),
    ],
)
def test_invalid_definitions_are_422_naming_the_field(client, change, code, field):
    agent = make_agent(client, capabilities=["prose"])["id"]
    body = trigger_body(agent)
    if "filter" in change:
        body.update(change)
    else:
        body["action"] = {k: v for k, v in {**body["action"], **change}.items() if v is not None}
    existing = make_trigger(client, agent)

    created = client.post(URL, json=body)
    replaced = client.put(f"{URL}/{existing['id']}", json=body)

    for response in (created, replaced):
        assert_problem(response, 422, code)
        assert error_fields(response) == {field}
    assert client.get(f"{URL}/{existing['id']}").json() == existing


@pytest.mark.parametrize(
    "change",
    [
        {"event_type": "issue created"},
        {"action": {"kind": "stop_the_world", "description": "x"}},
        {"surprise": True},
    ],
)
def test_malformed_bodies_are_400(client, change):
    assert_problem(client.post(URL, json=trigger_body("a", **change)), 400)


# --- firing ------------------------------------------------------------------------------


def test_a_matching_event_makes_a_templated_task_in_the_events_trace(client, clock):
    agent = make_agent(client)["id"]
    trigger = make_trigger(client, agent)
    clock.advance(minutes=1)
    event = opened("Crash on start", trace_id="trace-issue-7")

    consume(event)

    (task,) = tasks(client)
    assert client.get(f"/api/v1/tasks/{task['id']}").json() == {
        "id": task["id"],
        "description": "Triage: Crash on start",
        "agent_id": agent,
        "kind": "agent",
        "workflow_run_id": None,
        "workflow_step": None,
        "capability": None,
        "priority": "high",
        "context": {},
        "status": "pending",
        "attempts": 0,
        "max_attempts": 3,
        "timeout_seconds": 300,
        "run_at": "2026-01-01T12:01:00.000Z",
        "cancel_requested": False,
        "approval_id": None,
        "result": None,
        "error": None,
        "trace_id": "trace-issue-7",
        "created_by": f"trigger:{trigger['id']}",
        "created_at": "2026-01-01T12:01:00.000Z",
        "updated_at": "2026-01-01T12:01:00.000Z",
        "started_at": None,
        "completed_at": None,
        "duration_ms": None,
        "steps": [],
    }
    assert client.get(f"{URL}/{trigger['id']}").json() == {
        **trigger,
        "fired_count": 1,
        "last_fired_at": "2026-01-01T12:01:00.000Z",
    }
    (fired,) = events_of("trigger.fired")
    assert (fired.subject, fired.trace_id) == (trigger["id"], "trace-issue-7")
    assert fired.payload == {
        "trigger_id": trigger["id"],
        "event_id": event.id,
        "task_id": task["id"],
    }


def test_the_template_sees_the_whole_event(client, clock):
    agent = make_agent(client)["id"]
    description = (
        "{{ event.id }} {{ event.type }} {{ event.source }} {{ event.subject }} "
        "{{ event.trace_id }} {{ event.time }} {{ event.payload.issue.number + 1 }}"
        "{% for label in event.payload.labels %} #{{ label }}{% endfor %}"
    )
    make_trigger(
        client,
        agent,
        filter=None,
        action={"kind": "create_task", "agent_id": agent, "description": description},
    )
    event = emit(
        "issue.created",
        {"issue": {"number": 41}, "labels": ["bug", "p1"]},
        source="github",
        subject="acme/rocket#41",
        trace_id="t1",
    )

    consume(event)

    assert [t["description"] for t in tasks(client)] == [
        f"{event.id} issue.created github acme/rocket#41 t1 {NOW} 42 #bug #p1"
    ]


def test_a_filter_that_says_no_or_another_type_fires_nothing(client):
    agent = make_agent(client)["id"]
    trigger = make_trigger(client, agent)
    closed = emit("issue.created", {"action": "closed", "issue": {"title": "x"}})
    other = emit("pr.opened", {"action": "opened", "issue": {"title": "x"}})

    consume(closed, other)

    assert tasks(client) == []
    assert client.get(f"{URL}/{trigger['id']}").json() == trigger
    assert events_of("trigger.fired") == events_of("trigger.failed") == []


def test_a_disabled_trigger_does_not_fire(client):
    agent = make_agent(client)["id"]
    make_trigger(client, agent, enabled=False)

    consume(opened())

    assert tasks(client) == []


def test_a_template_error_is_recorded_and_the_other_triggers_still_fire(client, clock):
    agent = make_agent(client)["id"]
    broken = make_trigger(
        client,
        agent,
        name="broken",
        action={
            "kind": "create_task",
            "agent_id": agent,
            "description": "{{ event.payload.pr.title }}",
        },
    )
    working = make_trigger(client, agent, name="working")
    clock.advance(minutes=2)
    event = opened("Works", trace_id="trace-2")

    consume(event)

    message = "the description template failed: 'dict object' has no attribute 'pr'"
    assert client.get(f"{URL}/{broken['id']}").json() == {
        **broken,
        "error_count": 1,
        "last_error": {"message": message, "at": "2026-01-01T12:02:00.000Z", "event_id": event.id},
    }
    assert client.get(f"{URL}/{working['id']}").json()["fired_count"] == 1
    assert [t["description"] for t in tasks(client)] == ["Triage: Works"]
    (failed,) = events_of("trigger.failed")
    assert (failed.subject, failed.trace_id) == (broken["id"], "trace-2")
    assert failed.payload == {"trigger_id": broken["id"], "event_id": event.id, "error": message}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"filter": ".payload.issue.title + 1"},
            'the filter failed: string ("Crash on start") and number (1) cannot be added',
        ),
        (
            {"action": {"kind": "create_task", "capability": "ops", "description": "x"}},
            "No active agent declares the capability 'ops'.",
        ),
        (
            {"action": {"kind": "create_task", "capability": "ops", "description": "{{ '' }}"}},
            "the description template rendered an empty description",
        ),
        (
            {"action": {"kind": "create_task", "capability": "ops", "description": "{{ 1 / 0 }}"}},
            "the description template failed: ZeroDivisionError: division by zero",
        ),
        (
            {
                "action": {
                    "kind": "create_task",
                    "capability": "ops",
                    "description": "{{ 'x' * 1000000 }}",
                }
            },
            "the description template failed: a repetition longer than 100000 is not allowed",
        ),
        (
            {
                "action": {
                    "kind": "create_task",
                    "capability": "ops",
                    "description": "{{ event.payload.update({'action': 'closed'}) }}",
                }
            },
            "the description template failed: "
            "access to attribute 'update' of 'dict' object is unsafe.",
        ),
        (
            {
                "action": {
                    "kind": "create_task",
                    "capability": "ops",
                    "description": "{{ event.__class__.__mro__ }}",
                }
            },
            "the description template failed: "
            "access to attribute '__class__' of 'dict' object is unsafe.",
        ),
    ],
)
def test_runtime_failures_are_recorded_not_raised(client, clock, change, message):
    trigger = make_trigger(client, make_agent(client)["id"], **change)
    event = opened()

    consume(event)

    body = client.get(f"{URL}/{trigger['id']}").json()
    assert (body["error_count"], body["fired_count"]) == (1, 0)
    assert body["last_error"] == {"message": message, "at": NOW, "event_id": event.id}
    assert tasks(client) == []


def test_a_trigger_on_task_events_does_not_feed_on_its_own_tasks(client):
    agent = make_agent(client)["id"]
    trigger = make_trigger(
        client,
        agent,
        event_type="task.*",
        filter=None,
        action={"kind": "create_task", "agent_id": agent, "description": "Follow up"},
    )
    seen = Event.select(fn.MAX(Event.id)).scalar()
    client.post("/api/v1/tasks", json={"description": "Original", "agent_id": agent})

    rounds = 0
    while new := list(Event.select().where(Event.id > seen).order_by(Event.id)):
        seen, rounds = new[-1].id, rounds + 1  # as the processor hands over what it made
        consume(*new)
        assert rounds < 5

    assert sorted(t["description"] for t in tasks(client)) == ["Follow up", "Original"]
    assert client.get(f"{URL}/{trigger['id']}").json()["fired_count"] == 1


def test_a_trigger_reacts_at_most_ten_times_in_one_trace(client, clock):
    agent = make_agent(client)["id"]
    trigger = make_trigger(client, agent, filter=None)
    first = [opened(f"#{n}", trace_id="loop") for n in range(6)]
    consume(*first)  # six fires, recorded as events
    rest = [opened(f"#{n}", trace_id="loop") for n in range(6, 12)]

    consume(*rest)  # four more, then the guard
    consume(opened("elsewhere", trace_id="another"))

    body = client.get(f"{URL}/{trigger['id']}").json()
    assert (body["fired_count"], body["error_count"]) == (11, 2)
    assert body["last_error"] == {
        "message": "not fired: it already reacted 10 times in trace loop (a loop of triggers?)",
        "at": NOW,
        "event_id": rest[-1].id,
    }
    assert len(events_of("trigger.fired")) == 11 and events_of("trigger.failed") == []


@pytest.fixture
def live():
    """The event processor runs (see ``parked``)."""


def test_end_to_end_through_the_event_processor(live, client):
    agent = make_agent(client)["id"]
    helper = make_agent(client)["id"]
    make_trigger(
        client,
        agent,
        event_type="task.created",
        filter=f'.payload.agent_id == "{agent}"',
        action={
            "kind": "create_task",
            "agent_id": helper,
            "description": "Review {{ event.payload.task_id }}: {{ event.payload.description }}",
        },
    )

    original = client.post("/api/v1/tasks", json={"description": "Ship it", "agent_id": agent})

    made = wait_for(
        lambda: [t for t in tasks(client) if t["agent_id"] == helper],
        lambda found: len(found) == 1,
    )
    assert made[0]["description"] == f"Review {original.json()['id']}: Ship it"
    assert made[0]["trace_id"] == original.json()["trace_id"]
