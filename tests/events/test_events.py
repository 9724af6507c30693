"""The event log: written in the same transaction as the change, the events API, traces,
retention. Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from db import base as db_base
from db import events as db_events
from db.base import write_transaction
from db.events import Event
from hub.events import log as events
from hub.runtime import processor
from hub.services import tasks as task_service
from tests.assertions import TRACE_ID, assert_problem, error_fields
from tests.factories import make_agent, make_task, wait_for_task

EVENTS = "/api/v1/events"


def types_of(rows) -> list[str]:
    return [row.type for row in rows]


def all_events() -> list[Event]:
    return list(Event.select().order_by(Event.id))


# --- same transaction --------------------------------------------------------------------


def test_an_event_is_written_with_its_change_and_gets_the_next_id(app):
    with write_transaction():
        first = events.emit("test.one", payload={"n": 1})
        second = events.emit("test.two", subject="s", payload={"n": 2}, trace_id="t1")
        assert first.id is None  # written just before the commit
    assert second.id == first.id + 1
    rows = all_events()
    assert [(r.id, r.type, r.subject, r.payload, r.trace_id) for r in rows] == [
        (first.id, "test.one", None, {"n": 1}, first.trace_id),
        (second.id, "test.two", "s", {"n": 2}, "t1"),
    ]
    assert rows[0].trace_id == TRACE_ID


def test_a_change_that_rolls_back_leaves_no_event(app):
    with pytest.raises(RuntimeError), write_transaction():
        events.emit("test.lost")
        raise RuntimeError("the change fails")
    assert all_events() == []


def test_a_savepoint_that_rolls_back_drops_only_its_events(app):
    with write_transaction():
        events.emit("test.kept")
        with pytest.raises(RuntimeError), write_transaction():
            events.emit("test.dropped")
            raise RuntimeError("the inner change fails")
        events.emit("test.also_kept")
    assert types_of(all_events()) == ["test.kept", "test.also_kept"]


def test_a_failed_insert_rolls_the_change_back_with_it(app, client):
    """A service's change and its event commit together or not at all."""
    agent = make_agent(client)
    with pytest.raises(RuntimeError), write_transaction():
        task_service.create({"description": "x", "agent_id": agent["id"]})
        raise RuntimeError("boom")
    assert client.get("/api/v1/tasks").json()["items"] == []
    assert "task.created" not in types_of(all_events())


def test_services_emit_their_domain_events(client):
    agent = make_agent(client, id="writer")
    client.patch("/api/v1/agents/writer", json={"description": "new"})
    client.post("/api/v1/memories", json={"key": "k1", "content": "c", "scope": "global"})
    client.post("/api/v1/tools/current_time/execute", json={"arguments": {}})
    task = make_task(client, agent_id=agent["id"])
    wait_for_task(client, task["id"], "completed")
    seen = types_of(all_events())
    for expected in (
        "agent.created",
        "agent.updated",
        "memory.created",
        "tool.executed",
        "task.created",
        "task.started",
        "task.completed",
    ):
        assert expected in seen, (expected, seen)
    task_events = [e for e in all_events() if e.type.startswith("task.")]
    assert [e.type for e in task_events] == ["task.created", "task.started", "task.completed"]
    assert {e.trace_id for e in task_events} == {task["trace_id"]}
    assert task_events[-1].payload == {
        "task_id": task["id"],
        "agent_id": "writer",
        "status": "completed",
        "attempt": 1,
        "error": None,
    }


def test_a_chat_turn_completes_with_an_event_in_its_trace(client):
    make_agent(client, id="talker")
    session = client.post("/api/v1/sessions", json={"agent_id": "talker"}).json()
    reply = client.post(f"/api/v1/sessions/{session['id']}/messages", json={"content": "hi"})
    turn = reply.json()["turn"]
    completed = [e for e in all_events() if e.type == "turn.completed"]
    assert len(completed) == 1
    assert completed[0].subject == turn["id"]
    assert completed[0].trace_id == turn["trace_id"]
    client.post(f"/api/v1/sessions/{session['id']}/close")
    assert "session.closed" in types_of(all_events())


# --- the API -----------------------------------------------------------------------------


def test_push_answers_the_event_with_its_location(client, clock):
    response = client.post(
        EVENTS,
        json={
            "type": "deploy.finished",
            "source": "ci",
            "subject": "build-7",
            "trace_id": "abc",
            "payload": {"ok": True},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "type": "deploy.finished",
        "source": "ci",
        "actor": body["actor"],
        "subject": "build-7",
        "trace_id": "abc",
        "payload": {"ok": True},
        "raw": None,
        "time": "2026-01-01T12:00:00.000Z",
    }
    assert body["actor"].startswith("key_")  # the admin key the client sends
    assert response.headers["location"] == f"{EVENTS}/{body['id']}"
    assert client.get(response.headers["location"]).json() == body


def test_push_with_a_reused_idempotency_key_is_a_declared_409(client):
    headers = {"Idempotency-Key": "push-once"}
    first = client.post(EVENTS, json={"type": "deploy.started"}, headers=headers)
    again = client.post(EVENTS, json={"type": "deploy.started"}, headers=headers)
    other = client.post(EVENTS, json={"type": "deploy.finished"}, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert_problem(other, 409, "idempotency_key_reused")  # the client fixture: declared too


def test_push_defaults_source_payload_and_trace(client):
    body = client.post(EVENTS, json={"type": "x.y"}).json()
    assert (body["source"], body["payload"], body["subject"]) == ("api", {}, None)
    assert body["trace_id"] == TRACE_ID


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "nodots"}, "body.type"),
        ({"type": "Upper.Case"}, "body.type"),
        ({"type": "a.b", "payload": []}, "body.payload"),
        ({"type": "a.b", "extra": 1}, "body.extra"),
        ({}, "body.type"),
    ],
)
def test_push_names_the_bad_field(client, event, field):
    response = client.post(EVENTS, json=event)
    assert_problem(response, 400)
    assert field in error_fields(response)


@pytest.mark.parametrize(
    ("event", "field", "code"),
    [
        ({"type": "task.completed", "subject": "tsk_1"}, "body.type", "reserved_event_type"),
        ({"type": "api_key.created"}, "body.type", "reserved_event_type"),
        ({"type": "trigger.fired"}, "body.type", "reserved_event_type"),
        ({"type": "deploy.finished", "source": "hub"}, "body.source", "reserved_source"),
        ({"type": "deploy.finished", "source": "HUB"}, "body.source", "reserved_source"),
    ],
)
def test_the_hubs_own_events_cannot_be_forged(client, event, field, code):
    response = client.post(EVENTS, json=event)
    assert_problem(response, 422, code)
    assert error_fields(response) == {field}
    assert client.get(EVENTS, params={"type": event["type"]}).json()["items"] == []


def test_every_type_the_hub_emits_is_in_a_reserved_namespace():
    """Every event type written in the code (``emit("task.created", …)``, also through a
    module's own ``_event`` helper) is in ``HUB_NAMESPACES``, so none can be forged."""
    root = Path(__file__).resolve().parents[2]
    found = set()
    for path in [*(root / "hub").rglob("*.py"), *(root / "handlers").rglob("*.py")]:
        text = path.read_text()
        found |= {m.group(1) for m in re.finditer(r'emit\(\s*f?"([a-z_]+)\.', text)}
        found |= {m.group(1) for m in re.finditer(r'f"([a-z_]+)\.\{kind\}"', text)}
    assert len(found) > 10, found
    assert found - events.HUB_NAMESPACES == set()


def test_every_event_names_who_wrote_it(client, keyring):
    from tests.conftest import auth

    make_agent(client)
    pushed = client.post(
        EVENTS, json={"type": "deploy.finished"}, headers=auth(keyring["operator"])
    )
    assert pushed.status_code == 201, pushed.text
    actors = {e["type"]: e["actor"] for e in client.get(EVENTS).json()["items"]}
    assert actors["agent.created"] == "hub"
    assert actors["deploy.finished"] == pushed.json()["actor"]
    assert actors["deploy.finished"] != "hub" and actors["deploy.finished"].startswith("key_")


def test_get_an_unknown_event_is_404(client):
    assert_problem(client.get(f"{EVENTS}/999999"), 404, "event_not_found")


@pytest.mark.parametrize(
    ("path", "field"),
    [(f"{EVENTS}/{2**63 + 5}", "path.event_id"), (f"{EVENTS}?after_id={2**63}", "query.after_id")],
)
def test_an_event_id_past_int64_is_400_naming_it(client, path, field):
    """The contract's ids are int64 (``maximum`` declared): past it, a 400, not a lookup."""
    body = assert_problem(client.get(path), 400, "validation_error")
    assert [e["field"] for e in body["errors"]] == [field]


def test_list_filters_by_type_globs_source_subject_trace_and_since(client, clock):
    for type_, source in [("build.created", "ci"), ("build.failed", "ci"), ("issue.created", "gh")]:
        client.post(EVENTS, json={"type": type_, "source": source, "subject": f"s-{type_}"})
        clock.advance(minutes=1)
    client.post(EVENTS, json={"type": "issue.closed", "source": "gh", "trace_id": "tr1"})

    def listed(**query) -> list[str]:
        response = client.get(EVENTS, params=query)
        assert response.status_code == 200, response.text
        return [e["type"] for e in response.json()["items"]]

    assert listed() == ["issue.closed", "issue.created", "build.failed", "build.created"]
    assert listed(type="build.*") == ["build.failed", "build.created"]
    both = ["issue.closed", "issue.created", "build.created"]
    assert listed(type="build.created,issue.*") == both
    assert listed(type="*.c?eated") == ["issue.created", "build.created"]
    assert listed(type="[!b]*") == ["issue.closed", "issue.created"]
    assert listed(source="gh") == ["issue.closed", "issue.created"]
    assert listed(subject="s-build.failed") == ["build.failed"]
    assert listed(trace_id="tr1") == ["issue.closed"]
    assert listed(since="2026-01-01T12:01:30Z") == ["issue.closed", "issue.created"]
    first_id = client.get(EVENTS, params={"type": "build.created"}).json()["items"][0]["id"]
    assert listed(after_id=first_id) == ["issue.closed", "issue.created", "build.failed"]


def test_list_pages_newest_first(client):
    ids = [client.post(EVENTS, json={"type": "page.item"}).json()["id"] for _ in range(5)]
    first = client.get(EVENTS, params={"limit": 2, "type": "page.*"}).json()
    assert [e["id"] for e in first["items"]] == ids[::-1][:2]
    second = client.get(
        EVENTS, params={"limit": 2, "type": "page.*", "cursor": first["next_cursor"]}
    ).json()
    assert [e["id"] for e in second["items"]] == ids[::-1][2:4]


def test_types_counts_each_type(client, clock):
    for type_ in ("a.one", "b.two", "a.one"):
        client.post(EVENTS, json={"type": type_})
    items = client.get(f"{EVENTS}/types").json()["items"]
    counts = {item["type"]: item["count"] for item in items}
    assert counts["a.one"] == 2 and counts["b.two"] == 1
    assert [item["type"] for item in items][:2] == ["a.one", "b.two"]
    assert items[0]["last_at"] == "2026-01-01T12:00:00.000Z"


# --- traces ------------------------------------------------------------------------------


def test_a_trace_gathers_the_task_its_events_and_tool_executions(client):
    make_agent(client, id="clocker", tools=["current_time"], model="builtin/scripted")
    task = make_task(client, agent_id="clocker", description="/tool current_time {}\n/reply done")
    wait_for_task(client, task["id"], "completed")
    response = client.get(f"/api/v1/traces/{task['trace_id']}")
    assert response.status_code == 200, response.text
    trace = response.json()
    assert trace["trace_id"] == task["trace_id"]
    assert [t["id"] for t in trace["tasks"]] == [task["id"]]
    assert [e["type"] for e in trace["events"]] == [
        "task.created",
        "task.started",
        "tool.executed",
        "task.completed",
    ]
    assert [x["tool"] for x in trace["tool_executions"]] == ["current_time"]
    assert trace["tool_executions"][0]["trace_id"] == task["trace_id"]
    assert trace["turns"] == []


def test_an_unknown_trace_is_404(client):
    assert_problem(client.get("/api/v1/traces/nothing-here"), 404, "trace_not_found")


# --- retention ---------------------------------------------------------------------------


def test_retention_trims_by_age_and_count_but_never_unprocessed_events(app, clock, settings):
    with write_transaction():
        for n in range(3):
            events.emit("old.event", payload={"n": n})
    clock.advance(days=31)
    with write_transaction():
        for n in range(4):
            events.emit("new.event", payload={"n": n})
    # Nothing processed yet: nothing may go, however old.
    assert processor.sweep(settings) == 0
    while processor.process_batch():
        pass
    assert processor.sweep(settings.replace(event_retention_count=3)) == 4
    assert [e.payload["n"] for e in all_events()] == [1, 2, 3]


def test_retention_by_age_alone(app, clock, settings):
    with write_transaction():
        events.emit("old.event")
    clock.advance(days=settings.event_retention_days + 1)
    with write_transaction():
        events.emit("new.event")
    while processor.process_batch():
        pass
    assert processor.sweep(settings) == 1
    assert types_of(all_events()) == ["new.event"]


def test_the_processor_moves_its_cursor_once_per_event(app):
    with write_transaction():
        for n in range(5):
            events.emit("step.done", payload={"n": n})
    assert processor.process_batch(limit=3) == 3
    assert processor.process_batch(limit=3) == 2
    assert processor.process_batch(limit=3) == 0
    assert db_events.consumers_position() == all_events()[-1].id


def test_event_time_is_the_clock(app, clock):
    with write_transaction():
        events.emit("clock.tick")
    assert all_events()[0].time == dt.datetime(2026, 1, 1, 12, 0, 0)
    assert db_base.iso(all_events()[0].time) == "2026-01-01T12:00:00.000Z"


def test_concurrent_processors_hand_each_event_over_exactly_once(app, monkeypatch):
    """Several processors at once (threads here; hub processes on PostgreSQL in
    test_multiprocess): every event reaches the consumers once, in id order."""
    import threading

    from hub.services import subscriptions, triggers

    seen: list[int] = []
    lock = threading.Lock()

    def record(batch):
        with lock:
            seen.extend(event.id for event in batch)

    planned: list[int] = []  # a batch may be planned by several; it is carried out once
    monkeypatch.setattr(triggers, "plan", lambda batch: planned.extend(e.id for e in batch) or [])
    monkeypatch.setattr(triggers, "apply", lambda steps: None)
    monkeypatch.setattr(subscriptions, "consume", record)
    for n in range(60):
        events.emit("work.item", payload={"n": n})
    last = all_events()[-1].id
    errors = []

    def process():
        try:
            while db_events.consumers_position() < last:
                processor.process_batch(limit=7)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=process) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert seen == [event.id for event in all_events()]
