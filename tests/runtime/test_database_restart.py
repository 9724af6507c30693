"""The hub survives its PostgreSQL restarting (issue 13, break 3): while the server is down,
requests answer 503 ``database_unavailable`` (never 500) and readiness says 503; once it is
back, the same hub process serves again by itself, its workers finish the queue, and every
task it acknowledged is there."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.factories import wait_for
from tests.servers import HEADERS, Processes, hub_env
from tools.pgserver import PgServer

pytestmark = pytest.mark.slow  # its own PostgreSQL server and a hub process


@pytest.fixture
def pg():
    server = PgServer(dbname="restart").start()
    yield server
    server.stop()


class Load:
    """A light, steady stream of task creations, remembering every answer."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, headers=HEADERS, timeout=30)
        self.acknowledged: list[str] = []
        self.statuses: list[int] = []
        self.codes: set[str] = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            n += 1
            body = {"agent_id": "echo", "description": f"task {n}"}
            try:
                response = self.client.post("/api/v1/tasks", json=body)
            except httpx.HTTPError:
                continue
            self.statuses.append(response.status_code)
            if response.status_code == 201:
                self.acknowledged.append(response.json()["id"])
            else:
                self.codes.add(response.json().get("code"))
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(60)


def test_a_postgresql_restart_under_load_is_survived_without_a_hub_restart(pg, tmp_path):
    hubs = Processes()
    try:
        # The default lease (30 s): an attempt cut off by the outage is recorded, or handed
        # back, once the server answers again; nothing waits for its lease to lapse.
        env = hub_env(pg.url, tmp_path / "data", AETHER_WORKER_POLL_SECONDS="0.1")
        url = hubs.serve(env)
        client = httpx.Client(base_url=url, headers=HEADERS, timeout=30)
        agent = {"id": "echo", "name": "Echo", "model": "builtin/echo"}
        assert client.post("/api/v1/agents", json=agent).status_code == 201
        slow = {"id": "slow", "name": "Slow", "model": "builtin/scripted"}
        assert client.post("/api/v1/agents", json=slow).status_code == 201
        # A task whose model call ends while the server is down: its result is recorded
        # when the server is back, not re-run when its 30 s lease lapses.
        held = client.post(
            "/api/v1/tasks", json={"agent_id": "slow", "description": "/sleep 1500\n/reply ok"}
        ).json()["id"]
        wait_for(
            lambda: client.get(f"/api/v1/tasks/{held}").json()["status"], lambda s: s == "running"
        )
        held_since = time.monotonic()

        with Load(url) as load:
            wait_for(lambda: len(load.acknowledged), lambda n: n >= 10)
            pg.pause()
            down = wait_for(lambda: client.get("/health/ready"), lambda r: r.status_code == 503)
            assert down.json()["status"] != "ready"
            failing = client.get("/api/v1/agents")
            assert failing.status_code == 503, failing.text
            assert failing.json()["code"] == "database_unavailable"
            assert failing.headers["retry-after"] == "1"
            during = len(load.statuses)
            wait_for(lambda: len(load.statuses), lambda n: n >= during + 5)  # load meets it
            time.sleep(max(0.0, held_since + 2.5 - time.monotonic()))  # its model call ends
            pg.resume()
            wait_for(lambda: client.get("/health/ready").status_code, lambda s: s == 200)
            after = len(load.acknowledged)
            wait_for(lambda: len(load.acknowledged), lambda n: n >= after + 10)

        assert 500 not in load.statuses
        assert set(load.statuses) <= {201, 503}, sorted(set(load.statuses))
        assert 503 in load.statuses and load.codes == {"database_unavailable"}
        for task_id in [held, *load.acknowledged]:  # nothing acknowledged is lost, all runs
            task = wait_for(
                lambda task_id=task_id: client.get(f"/api/v1/tasks/{task_id}").json(),
                lambda task: task.get("status") == "completed",
                seconds=60,
            )
            # one attempt: none was cut off and left to lapse (that would count a second)
            assert task["attempts"] == 1, task
    finally:
        hubs.stop_all()
