"""The scheduler with a fake clock, ``tick()`` called by hand: due ticks run once, missed ticks
after downtime run once, time zones and daylight-saving changes, failing actions, disabled
schedules, and exactly once when two threads (on SQLite and PostgreSQL) tick together."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from db.automation import Schedule, ScheduleRun
from db.base import new_id, utcnow, write_transaction
from db.events import Event
from hub.runtime import processor, scheduler
from hub.services.schedules import next_tick
from tests.factories import make_agent, wait_for

URL = "/api/v1/schedules"


@pytest.fixture
def settings(settings):
    return settings.replace(workers=0)


@pytest.fixture(autouse=True)
def parked(request, monkeypatch):
    """The background scheduler stays idle (the tests call ``tick`` themselves) unless a test
    asks for ``live``; the event processor always does."""
    if "live" not in request.fixturenames:

        async def idle(runtime):
            return None

        monkeypatch.setattr(scheduler, "run_forever", idle)
    monkeypatch.setattr(processor, "process_batch", lambda limit=200: 0)


@pytest.fixture
def live():
    """The app's own scheduler loop runs (see ``parked``)."""


def make_schedule(client, cron: str, timezone: str = "UTC", **fields) -> dict:
    agent = fields.pop("agent_id", None) or make_agent(client)["id"]
    body = {
        "name": "Report",
        "cron": cron,
        "timezone": timezone,
        "action": {"kind": "create_task", "agent_id": agent, "description": "Report {{ now }}"},
        **fields,
    }
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def runs(client, schedule_id: str) -> list[dict]:
    return client.get(f"{URL}/{schedule_id}/runs").json()["items"]


def get(client, schedule_id: str) -> dict:
    return client.get(f"{URL}/{schedule_id}").json()


def tasks(client) -> list[dict]:
    return client.get("/api/v1/tasks").json()["items"]


def test_nothing_runs_before_the_tick(client, clock):
    schedule = make_schedule(client, "*/5 * * * *")
    clock.advance(minutes=4, seconds=59)

    assert scheduler.tick() == 0
    assert runs(client, schedule["id"]) == []


def test_a_due_tick_runs_once_and_the_next_one_is_set(client, clock):
    schedule = make_schedule(client, "*/5 * * * *")
    assert schedule["next_run_at"] == "2026-01-01T12:05:00.000Z"
    clock.advance(minutes=5, seconds=2)

    assert scheduler.tick() == 1
    assert scheduler.tick() == 0

    (run,) = runs(client, schedule["id"])
    (task,) = tasks(client)
    at = "2026-01-01T12:05:02.000Z"
    assert run == {
        "id": run["id"],
        "schedule_id": schedule["id"],
        "trigger": "cron",
        "scheduled_for": "2026-01-01T12:05:00.000Z",
        "started_at": at,
        "finished_at": at,
        "status": "succeeded",
        "task_id": task["id"],
        "workflow_run_id": None,
        "error": None,
    }
    assert task["description"] == "Report 2026-01-01T12:05:02+00:00"
    assert get(client, schedule["id"]) == {
        **schedule,
        "next_run_at": "2026-01-01T12:10:00.000Z",
        "last_run_at": at,
    }
    (fired,) = Event.select().where(Event.type == "schedule.fired")
    assert (fired.subject, fired.trace_id) == (schedule["id"], task["trace_id"])
    assert fired.payload == {
        "schedule_id": schedule["id"],
        "run_id": run["id"],
        "task_id": task["id"],
        "workflow_run_id": None,
        "scheduled_for": "2026-01-01T12:05:00.000Z",
    }


def test_after_downtime_the_missed_ticks_run_once(client, clock):
    schedule = make_schedule(client, "*/5 * * * *")
    clock.advance(hours=3, minutes=7)  # 36 ticks missed

    assert scheduler.tick() == 1
    assert scheduler.tick() == 0

    (run,) = runs(client, schedule["id"])
    assert run["scheduled_for"] == "2026-01-01T12:05:00.000Z"  # the oldest missed tick
    assert run["started_at"] == "2026-01-01T15:07:00.000Z"
    assert get(client, schedule["id"])["next_run_at"] == "2026-01-01T15:10:00.000Z"  # after now
    assert len(tasks(client)) == 1

    clock.advance(minutes=3)
    assert scheduler.tick() == 1
    assert [r["scheduled_for"] for r in runs(client, schedule["id"])] == [
        "2026-01-01T15:10:00.000Z",
        "2026-01-01T12:05:00.000Z",
    ]


def test_every_due_schedule_runs_in_one_tick(client, clock):
    agent = make_agent(client)["id"]
    hourly = make_schedule(client, "0 * * * *", agent_id=agent)
    quarter = make_schedule(client, "*/15 * * * *", agent_id=agent)
    daily = make_schedule(client, "0 9 * * *", agent_id=agent)
    clock.advance(hours=1)

    assert scheduler.tick() == 2

    assert len(runs(client, hourly["id"])) == len(runs(client, quarter["id"])) == 1
    assert runs(client, daily["id"]) == []


def test_a_disabled_schedule_does_not_run(client, clock):
    schedule = make_schedule(client, "*/5 * * * *", enabled=False)
    other = make_schedule(client, "*/5 * * * *")
    client.patch(f"{URL}/{other['id']}", json={"enabled": False})
    clock.advance(hours=1)

    assert scheduler.tick() == 0

    assert runs(client, schedule["id"]) == runs(client, other["id"]) == []
    assert tasks(client) == []


def test_a_failing_action_gives_a_failed_run_and_the_schedule_goes_on(client, clock):
    agent = make_agent(client)["id"]
    schedule = make_schedule(client, "0 * * * *", agent_id=agent)
    client.patch(
        f"{URL}/{schedule['id']}",
        json={
            "action": {
                "kind": "create_task",
                "agent_id": agent,
                "description": "{{ schedule.owner.email }}",
            }
        },
    )
    clock.advance(hours=1)

    assert scheduler.tick() == 1

    (run,) = runs(client, schedule["id"])
    error = "the description template failed: 'dict object' has no attribute 'owner'"
    assert (run["status"], run["task_id"], run["error"]) == ("failed", None, error)
    assert run["scheduled_for"] == "2026-01-01T13:00:00.000Z"
    assert get(client, schedule["id"])["next_run_at"] == "2026-01-01T14:00:00.000Z"
    assert tasks(client) == []
    (failed,) = Event.select().where(Event.type == "schedule.failed")
    assert failed.payload == {
        "schedule_id": schedule["id"],
        "run_id": run["id"],
        "task_id": None,
        "workflow_run_id": None,
        "scheduled_for": "2026-01-01T13:00:00.000Z",
        "error": error,
    }


def test_a_tick_that_has_a_run_already_is_not_run_again(client, clock):
    """The unique index on (schedule_id, scheduled_for) is the second guard: should a tick
    be offered twice, the second fire rolls back (no task) and only moves next_run_at."""
    schedule = make_schedule(client, "0 * * * *")
    clock.advance(hours=1)
    tick = dt.datetime(2026, 1, 1, 13, 0)
    with write_transaction():
        ScheduleRun.create(
            id=new_id("run"),
            schedule_id=schedule["id"],
            trigger="cron",
            scheduled_for=tick,
            started_at=utcnow(),
            finished_at=utcnow(),
            status="succeeded",
        )

    assert scheduler.tick() == 0

    assert len(runs(client, schedule["id"])) == 1
    assert tasks(client) == []
    assert get(client, schedule["id"])["next_run_at"] == "2026-01-01T14:00:00.000Z"
    assert not Event.select().where(Event.type.startswith("schedule.f")).exists()


def test_the_next_run_follows_the_time_zone_across_daylight_saving(client, clock):
    clock.now = dt.datetime(2026, 3, 27, 12, 0)  # Friday; Paris goes to summer time Sunday
    schedule = make_schedule(client, "0 9 * * *", "Europe/Paris")
    seen = [schedule["next_run_at"]]

    for _ in range(3):
        clock.now = dt.datetime.fromisoformat(seen[-1].replace("Z", "")) + dt.timedelta(seconds=1)
        assert scheduler.tick() == 1
        seen.append(get(client, schedule["id"])["next_run_at"])

    assert seen == [
        "2026-03-28T08:00:00.000Z",  # 09:00 CET
        "2026-03-29T07:00:00.000Z",  # 09:00 CEST
        "2026-03-30T07:00:00.000Z",
        "2026-03-31T07:00:00.000Z",
    ]


@pytest.mark.parametrize(
    ("cron", "timezone", "after", "ticks"),
    [
        # a fixed wall time: 09:00 in winter and in summer
        ("0 9 * * *", "Europe/Paris", "2026-01-01 12:00", ["01-02 08:00", "01-03 08:00"]),
        ("0 9 * * *", "Europe/Paris", "2026-07-01 12:00", ["07-02 07:00", "07-03 07:00"]),
        # spring: 02:30 does not exist on 29 March; it runs once, when the clocks jump
        (
            "30 2 * * *",
            "Europe/Paris",
            "2026-03-28 12:00",
            ["03-29 01:00", "03-30 00:30", "03-31 00:30"],
        ),
        # autumn: 02:30 happens twice on 25 October; it runs once, the first time
        (
            "30 2 * * *",
            "Europe/Paris",
            "2026-10-24 12:00",
            ["10-25 00:30", "10-26 01:30", "10-27 01:30"],
        ),
        # an interval job (hour field *) runs in both of autumn's 02:00 hours …
        (
            "0 * * * *",
            "Europe/Paris",
            "2026-10-24 23:30",
            ["10-25 00:00", "10-25 01:00", "10-25 02:00"],
        ),
        # … and in spring simply goes from 01:00 to 03:00 (an hour apart, as it should)
        ("0 * * * *", "Europe/Paris", "2026-03-28 23:30", ["03-29 00:00", "03-29 01:00"]),
        (
            "0 1 * * *",
            "America/New_York",
            "2026-11-01 04:00",
            ["11-01 05:00", "11-02 06:00"],
        ),
        ("0 0 1 * *", "Asia/Kolkata", "2026-01-31 12:00", ["01-31 18:30", "02-28 18:30"]),
    ],
)
def test_next_tick_in_a_time_zone(cron, timezone, after, ticks):
    moment = dt.datetime.fromisoformat(after)
    seen = []
    for _ in ticks:
        moment = next_tick(cron, timezone, moment)
        seen.append(moment.strftime("%m-%d %H:%M"))
    assert seen == ticks


def test_the_next_tick_is_strictly_after(clock):
    on_the_tick = dt.datetime(2026, 1, 1, 12, 0)
    assert next_tick("0 * * * *", "UTC", on_the_tick) == dt.datetime(2026, 1, 1, 13, 0)


def test_two_threads_ticking_together_run_each_tick_once(client, clock):
    agent = make_agent(client)["id"]
    made = [make_schedule(client, "*/5 * * * *", agent_id=agent) for _ in range(4)]
    clock.advance(minutes=5)
    start = threading.Barrier(2)
    counts: list[int] = []
    failures: list[BaseException] = []

    def ticker() -> None:
        try:
            start.wait()
            counts.append(scheduler.tick())
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert sum(counts) == 4
    assert ScheduleRun.select().count() == 4
    assert len(tasks(client)) == 4
    for schedule in made:
        assert [r["scheduled_for"] for r in runs(client, schedule["id"])] == [
            "2026-01-01T12:05:00.000Z"
        ]
        assert Schedule.get_by_id(schedule["id"]).next_run_at == dt.datetime(2026, 1, 1, 12, 10)


def test_the_app_runs_due_schedules_by_itself(live, client, clock):
    schedule = make_schedule(client, "* * * * *")
    clock.advance(minutes=1)

    (run,) = wait_for(lambda: runs(client, schedule["id"]), lambda found: len(found) == 1)

    assert (run["trigger"], run["status"]) == ("cron", "succeeded")
    assert run["scheduled_for"] == "2026-01-01T12:01:00.000Z"
