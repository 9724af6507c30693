"""Schedules over the API: CRUD with whole bodies, validation, enabling and disabling, manual
runs and the runs history. (Cron ticks, downtime, time zones and concurrency:
tests/runtime/test_scheduler.py.)"""

from __future__ import annotations

import datetime as dt

import pytest

from db.events import Event
from hub.runtime import processor, scheduler
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent

URL = "/api/v1/schedules"
NOW = "2026-01-01T12:00:00.000Z"


@pytest.fixture
def settings(settings):
    return settings.replace(workers=0)


@pytest.fixture(autouse=True)
def parked(monkeypatch):
    """No background scheduler or event processor: the tests drive what runs."""

    async def idle(runtime):
        return None

    monkeypatch.setattr(scheduler, "run_forever", idle)
    monkeypatch.setattr(processor, "process_batch", lambda limit=200: 0)


def schedule_body(agent_id: str, **overrides) -> dict:
    body = {
        "name": "Morning report",
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Paris",
        "action": {
            "kind": "create_task",
            "agent_id": agent_id,
            "description": "{{ schedule.name }} for {{ now[:10] }} ({{ schedule.timezone }})",
            "priority": "low",
        },
    }
    body.update(overrides)
    return body


def make_schedule(client, agent_id: str, **overrides) -> dict:
    response = client.post(URL, json=schedule_body(agent_id, **overrides))
    assert response.status_code == 201, response.text
    return response.json()


def events_of(type_: str) -> list[Event]:
    return list(Event.select().where(Event.type == type_).order_by(Event.id))


def test_create_answers_the_whole_schedule(client, clock):
    agent = make_agent(client)["id"]

    response = client.post(URL, json=schedule_body(agent))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("sch_")
    assert response.headers["location"] == f"{URL}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body == {
        "id": body["id"],
        "name": "Morning report",
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Paris",
        "enabled": True,
        "action": schedule_body(agent)["action"],
        "next_run_at": "2026-01-02T08:00:00.000Z",  # Friday 09:00 in Paris (UTC+1)
        "last_run_at": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    got = client.get(f"{URL}/{body['id']}")
    assert got.json() == body and got.headers["etag"] == '"1"'
    assert client.get(URL).json() == {"items": [body], "next_cursor": None}
    (created,) = events_of("schedule.created")
    assert created.payload == {
        "schedule_id": body["id"],
        "name": "Morning report",
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Paris",
        "enabled": True,
    }


def test_the_time_zone_defaults_to_utc_and_a_disabled_schedule_has_no_next_run(client, clock):
    agent = make_agent(client)["id"]
    body = schedule_body(agent, cron="*/15 * * * *", enabled=False)
    del body["timezone"]

    created = client.post(URL, json=body).json()

    assert (created["timezone"], created["enabled"], created["next_run_at"]) == (
        "UTC",
        False,
        None,
    )


def test_list_is_newest_first_and_pages(client):
    agent = make_agent(client)["id"]
    first = make_schedule(client, agent, name="one")
    second = make_schedule(client, agent, name="two")

    page_1 = client.get(URL, params={"limit": 1}).json()
    page_2 = client.get(URL, params={"limit": 1, "cursor": page_1["next_cursor"]}).json()

    assert [s["id"] for s in page_1["items"]] == [second["id"]]
    assert page_2 == {"items": [first], "next_cursor": None}


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"cron": "61 * * * *"}, "invalid_cron", "body.cron"),
        ({"cron": "0 0 31 2 *"}, "invalid_cron", "body.cron"),  # never fires
        ({"cron": "0 0 * * L"}, "invalid_cron", "body.cron"),
        ({"timezone": "Mars/Olympus_Mons"}, "invalid_timezone", "body.timezone"),
        (
            {"action": {"kind": "create_task", "agent_id": "ghost", "description": "x"}},
            "agent_not_found",
            "body.action.agent_id",
        ),
        (
            {"action": {"kind": "create_task", "description": "x"}},
            "no_route",
            "body.action.agent_id",
        ),
        (
            {"action": {"kind": "create_task", "capability": "ops", "description": "{{ now"}},
            "invalid_template",
            "body.action.description",
        ),
    ],
)
def test_invalid_schedules_are_422_naming_the_field(client, change, code, field):
    agent = make_agent(client)["id"]
    existing = make_schedule(client, agent)

    created = client.post(URL, json=schedule_body(agent, **change))
    patched = client.patch(f"{URL}/{existing['id']}", json=change)

    for response in (created, patched):
        assert_problem(response, 422, code)
        assert error_fields(response) == {field}
    assert client.get(f"{URL}/{existing['id']}").json() == existing


@pytest.mark.parametrize(
    "change",
    [{"cron": "* * * *"}, {"cron": "0 9 * * * *"}, {"timezone": "Europe/Paris "}, {"x": 1}],
)
def test_malformed_bodies_are_400(client, change):
    assert_problem(client.post(URL, json=schedule_body("a", **change)), 400)


def test_patch_changes_only_what_it_names(client, clock):
    agent = make_agent(client)["id"]
    schedule = make_schedule(client, agent)
    clock.advance(hours=1)

    response = client.patch(
        f"{URL}/{schedule['id']}", json={"name": "Daily report"}, headers={"If-Match": '"1"'}
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json() == {
        **schedule,
        "name": "Daily report",
        "updated_at": "2026-01-01T13:00:00.000Z",
    }
    assert_problem(
        client.patch(f"{URL}/{schedule['id']}", json={"name": "x"}, headers={"If-Match": '"1"'}),
        412,
        "etag_mismatch",
    )


def test_disabling_clears_the_next_run_and_enabling_computes_it_from_now(client, clock):
    agent = make_agent(client)["id"]
    schedule = make_schedule(client, agent, cron="0 * * * *", timezone="UTC")
    assert schedule["next_run_at"] == "2026-01-01T13:00:00.000Z"

    disabled = client.patch(f"{URL}/{schedule['id']}", json={"enabled": False}).json()
    clock.advance(hours=5, minutes=10)
    enabled = client.patch(f"{URL}/{schedule['id']}", json={"enabled": True}).json()

    assert (disabled["enabled"], disabled["next_run_at"]) == (False, None)
    assert (enabled["enabled"], enabled["next_run_at"]) == (True, "2026-01-01T18:00:00.000Z")


def test_a_new_cron_or_time_zone_computes_the_next_run_from_now(client, clock):
    agent = make_agent(client)["id"]
    schedule = make_schedule(client, agent, cron="0 9 * * *", timezone="UTC")
    assert schedule["next_run_at"] == "2026-01-02T09:00:00.000Z"

    zoned = client.patch(f"{URL}/{schedule['id']}", json={"timezone": "Asia/Tokyo"}).json()
    assert zoned["next_run_at"] == "2026-01-02T00:00:00.000Z"  # 09:00 in Tokyo (UTC+9)
    recron = client.patch(f"{URL}/{schedule['id']}", json={"cron": "30 21 * * *"}).json()
    assert recron["next_run_at"] == "2026-01-01T12:30:00.000Z"  # 21:30 in Tokyo, today


def test_run_now_makes_a_task_and_records_the_run(client, clock):
    agent = make_agent(client)["id"]
    schedule = make_schedule(client, agent)
    clock.advance(minutes=3)

    response = client.post(f"{URL}/{schedule['id']}/run")

    assert response.status_code == 201, response.text
    run = response.json()
    (task,) = client.get("/api/v1/tasks").json()["items"]
    at = "2026-01-01T12:03:00.000Z"
    assert run == {
        "id": run["id"],
        "schedule_id": schedule["id"],
        "trigger": "manual",
        "scheduled_for": None,
        "started_at": at,
        "finished_at": at,
        "status": "succeeded",
        "task_id": task["id"],
        "workflow_run_id": None,
        "error": None,
    }
    assert task["description"] == "Morning report for 2026-01-01 (Europe/Paris)"
    assert (task["agent_id"], task["priority"]) == (agent, "low")
    assert task["created_by"] == f"schedule:{schedule['id']}"
    assert client.get(f"{URL}/{schedule['id']}").json() == {
        **schedule,
        "last_run_at": at,  # the timing is unchanged
    }
    assert client.get(f"{URL}/{schedule['id']}/runs").json() == {
        "items": [run],
        "next_cursor": None,
    }
    (fired,) = events_of("schedule.fired")
    assert (fired.subject, fired.trace_id) == (schedule["id"], task["trace_id"])
    assert fired.payload == {
        "schedule_id": schedule["id"],
        "run_id": run["id"],
        "task_id": task["id"],
        "workflow_run_id": None,
        "scheduled_for": None,
    }


def test_a_schedule_in_year_870_writes_four_digit_years(client, clock):
    """Schedules take no timestamp (cron and time zone): this checks what they write."""
    clock.now = dt.datetime(870, 8, 6, 10, 0, 0)
    schedule = make_schedule(client, make_agent(client)["id"], timezone="UTC")
    run = client.post(f"{URL}/{schedule['id']}/run").json()

    assert schedule["next_run_at"] == "0870-08-07T09:00:00.000Z"  # a Thursday's 9:00
    assert schedule["created_at"] == "0870-08-06T10:00:00.000Z"
    assert run["started_at"] == run["finished_at"] == "0870-08-06T10:00:00.000Z"
    (task,) = client.get("/api/v1/tasks").json()["items"]
    assert task["run_at"] == "0870-08-06T10:00:00.000Z"


def test_a_run_is_located_at_its_own_url_and_named_in_the_audit(client):
    schedule = make_schedule(client, make_agent(client)["id"])

    response = client.post(f"{URL}/{schedule['id']}/run")

    run = response.json()
    location = f"{URL}/{schedule['id']}/runs/{run['id']}"
    assert response.headers["location"] == location
    read = client.get(location)
    assert (read.status_code, read.json()) == (200, run)
    (entry,) = client.get("/api/v1/audit-log", params={"action": "run_schedule"}).json()["items"]
    assert entry["resource"] == location


def test_a_run_of_another_schedule_or_none_is_404(client):
    agent = make_agent(client)["id"]
    first, second = make_schedule(client, agent), make_schedule(client, agent)
    run = client.post(f"{URL}/{first['id']}/run").json()

    assert_problem(client.get(f"{URL}/{second['id']}/runs/{run['id']}"), 404, "run_not_found")
    assert_problem(client.get(f"{URL}/{first['id']}/runs/run_nope"), 404, "run_not_found")
    assert_problem(client.get(f"{URL}/sch_nope/runs/{run['id']}"), 404, "schedule_not_found")


def test_the_template_sees_the_schedule_and_now_in_its_time_zone(client, clock):
    agent = make_agent(client)["id"]
    description = "{{ schedule.id }}|{{ schedule.name }}|{{ schedule.cron }}|{{ now }}"
    schedule = make_schedule(
        client,
        agent,
        timezone="America/New_York",
        action={"kind": "create_task", "agent_id": agent, "description": description},
    )

    client.post(f"{URL}/{schedule['id']}/run")

    (task,) = client.get("/api/v1/tasks").json()["items"]
    assert task["description"] == (
        f"{schedule['id']}|Morning report|0 9 * * 1-5|2026-01-01T07:00:00-05:00"
    )


def test_a_failing_action_gives_a_failed_run(client, clock):
    schedule = make_schedule(
        client,
        make_agent(client)["id"],
        action={"kind": "create_task", "capability": "ops", "description": "Check"},
    )

    run = client.post(f"{URL}/{schedule['id']}/run").json()

    assert run == {
        "id": run["id"],
        "schedule_id": schedule["id"],
        "trigger": "manual",
        "scheduled_for": None,
        "started_at": NOW,
        "finished_at": NOW,
        "status": "failed",
        "task_id": None,
        "workflow_run_id": None,
        "error": "No active agent declares the capability 'ops'.",
    }
    assert client.get("/api/v1/tasks").json()["items"] == []
    assert events_of("schedule.fired") == []
    (failed,) = events_of("schedule.failed")
    assert failed.payload == {
        "schedule_id": schedule["id"],
        "run_id": run["id"],
        "task_id": None,
        "workflow_run_id": None,
        "scheduled_for": None,
        "error": "No active agent declares the capability 'ops'.",
    }


def test_runs_are_newest_first_and_page(client):
    schedule = make_schedule(client, make_agent(client)["id"])
    runs = [client.post(f"{URL}/{schedule['id']}/run").json() for _ in range(3)]

    page_1 = client.get(f"{URL}/{schedule['id']}/runs", params={"limit": 2}).json()
    page_2 = client.get(
        f"{URL}/{schedule['id']}/runs", params={"limit": 2, "cursor": page_1["next_cursor"]}
    ).json()

    assert page_1["items"] == [runs[2], runs[1]]
    assert page_2 == {"items": [runs[0]], "next_cursor": None}


def test_delete_removes_the_schedule_and_its_runs(client):
    schedule = make_schedule(client, make_agent(client)["id"])
    client.post(f"{URL}/{schedule['id']}/run")

    assert client.delete(f"{URL}/{schedule['id']}").status_code == 204

    for response in (
        client.get(f"{URL}/{schedule['id']}"),
        client.get(f"{URL}/{schedule['id']}/runs"),
        client.post(f"{URL}/{schedule['id']}/run"),
        client.patch(f"{URL}/{schedule['id']}", json={"name": "x"}),
        client.delete(f"{URL}/{schedule['id']}"),
    ):
        assert_problem(response, 404, "schedule_not_found")
    assert len(client.get("/api/v1/tasks").json()["items"]) == 1  # its task stays
