"""User programs cannot freeze the hub (issue 13, breaks 1 and 2): while a jq filter or a
Jinja template spins, the hub answers, writes still commit, and the program is stopped at its
limit and recorded where it came from; the event it was run for is then done. Once across a
``kill -9`` of a real hub mid-program: it comes up again and goes past the poison event."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import httpx
import pytest

from hub.core import programs
from tests.factories import agent_body, make_agent, wait_for
from tests.servers import HEADERS, Processes, hub_env

JQ_BOMB = "last(range(1e13)) > 0"
JINJA_BOMB = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
LIMIT_MS = 1000  # long enough to act while the program runs; the default is 200


@pytest.fixture
def settings(settings):
    return settings.replace(program_timeout_ms=LIMIT_MS, event_poll_seconds=0.05)


def running_programs() -> int:
    return programs._pool.busy()


def trigger(client, agent_id: str, **overrides) -> dict:
    body = {
        "name": "bomb",
        "event_type": "bomb.*",
        "action": {"kind": "create_task", "agent_id": agent_id, "description": "Go"},
        **overrides,
    }
    response = client.post("/api/v1/triggers", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def answers_while_running(client, is_running) -> None:
    """While ``is_running()`` holds, the hub answers a liveness probe and commits a write;
    ``is_running()`` still holds afterwards (so both happened while the program ran)."""
    wait_for(running_programs, lambda busy: busy > 0)
    assert client.get("/health/live").status_code == 200
    assert client.post("/api/v1/agents", json=agent_body()).status_code == 201
    assert is_running(), "the program ended before the hub was tried"


@pytest.mark.parametrize(
    ("overrides", "prefix"),
    [
        ({"filter": JQ_BOMB}, "the filter failed: the program ran past its 1000 ms limit"),
        (
            {"action": {"kind": "create_task", "agent_id": "AGENT", "description": JINJA_BOMB}},
            "the description template failed: the program ran past its 1000 ms limit",
        ),
    ],
    ids=["jq-filter", "jinja-template"],
)
def test_a_trigger_program_that_never_ends(client, overrides, prefix):
    agent = make_agent(client)["id"]
    if "action" in overrides:
        overrides["action"]["agent_id"] = agent
    bomb = trigger(client, agent, **overrides)
    plain = trigger(client, agent, name="plain")  # the event's other consumer
    url = f"/api/v1/triggers/{bomb['id']}"

    pushed = client.post("/api/v1/events", json={"type": "bomb.dropped", "payload": {}})
    assert pushed.status_code == 201, pushed.text
    answers_while_running(client, lambda: client.get(url).json()["last_error"] is None)

    failed = wait_for(lambda: client.get(url).json(), lambda t: t["last_error"] is not None)
    assert failed["error_count"] == 1
    assert failed["last_error"]["message"].startswith(prefix), failed["last_error"]
    assert failed["last_error"]["event_id"] == pushed.json()["id"]
    events = client.get("/api/v1/events", params={"type": "trigger.failed"}).json()["items"]
    assert [e["payload"]["trigger_id"] for e in events] == [bomb["id"]]
    done = wait_for(
        lambda: client.get(f"/api/v1/triggers/{plain['id']}").json(),
        lambda t: t["fired_count"] == 1,
    )
    assert done["last_error"] is None


def test_a_schedule_template_that_never_ends(client):
    agent = make_agent(client)["id"]
    body = {
        "name": "bomb",
        "cron": "0 0 1 1 *",
        "action": {"kind": "create_task", "agent_id": agent, "description": JINJA_BOMB},
    }
    schedule = client.post("/api/v1/schedules", json=body)
    assert schedule.status_code == 201, schedule.text
    answer: dict = {}
    run = threading.Thread(
        target=lambda: answer.update(
            response=client.post(f"/api/v1/schedules/{schedule.json()['id']}/run")
        )
    )
    run.start()
    answers_while_running(client, lambda: "response" not in answer)
    run.join(60)

    response = answer["response"]
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "failed"
    assert response.json()["error"].startswith(
        "the description template failed: the program ran past its 1000 ms limit"
    )


def test_programs_are_checked_when_stored(client):
    agent = make_agent(client)["id"]
    action = {"kind": "create_task", "agent_id": agent, "description": "ok"}
    for overrides, field in (
        ({"filter": ".a =="}, "body.filter"),
        ({"action": {**action, "description": "{{ x }"}}, "body.action.description"),
    ):
        body = {"name": "bad", "event_type": "x.*", "action": action, **overrides}
        response = client.post("/api/v1/triggers", json=body)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == [field]


# --- a real hub, killed mid-program -----------------------------------------------------


@pytest.mark.slow
def test_a_hub_killed_mid_program_comes_back_and_moves_past_the_event(tmp_path):
    hubs = Processes()
    url_db = f"sqlite:///{tmp_path / 'hub.db'}"
    try:
        env = hub_env(url_db, tmp_path / "data", AETHER_PROGRAM_TIMEOUT_MS="60000")
        url = hubs.serve(env)
        client = httpx.Client(base_url=url, headers=HEADERS, timeout=30)
        agent = client.post("/api/v1/agents", json=agent_body()).json()["id"]
        bomb = trigger(client, agent, filter=JQ_BOMB)
        plain = trigger(client, agent, name="plain")
        assert client.post("/api/v1/events", json={"type": "bomb.dropped"}).status_code == 201
        first = hubs.running[0]
        workers = wait_for(lambda: _program_workers(first.pid), lambda pids: pids)
        assert client.get("/health/live").status_code == 200  # the hub answers meanwhile
        os.kill(first.pid, signal.SIGKILL)
        first.wait()

        url = hubs.serve(hub_env(url_db, tmp_path / "data"))  # the default 200 ms limit
        client = httpx.Client(base_url=url, headers=HEADERS, timeout=30)
        failed = wait_for(
            lambda: client.get(f"/api/v1/triggers/{bomb['id']}").json(),
            lambda t: t["last_error"] is not None,
        )
        assert "ran past its 200 ms limit" in failed["last_error"]["message"]
        wait_for(
            lambda: client.get(f"/api/v1/triggers/{plain['id']}").json(),
            lambda t: t["fired_count"] == 1,
        )
        for pid in workers:  # the dead hub's program worker did not spin on
            wait_for(lambda pid=pid: _alive(pid), lambda alive: not alive, seconds=10)
    finally:
        hubs.stop_all()


def _program_workers(hub_pid: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(hub_pid), "-f", "hub.core.programs"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in found.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
