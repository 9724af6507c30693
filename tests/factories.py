"""Plain functions that make valid request bodies and resources."""

from __future__ import annotations

import itertools

_counter = itertools.count(1)


def agent_body(**overrides) -> dict:
    body = {
        "id": f"agent-{next(_counter)}",
        "name": "Helper",
        "model": "builtin/echo",
        "system_prompt": "You help.",
    }
    body.update(overrides)
    return body


def make_agent(client, **overrides) -> dict:
    response = client.post("/api/v1/agents", json=agent_body(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def make_task(client, **overrides) -> dict:
    body = {"description": "Summarise the week."}
    body.update(overrides)
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for(read, done, *, seconds: float = 20.0, every: float = 0.02):
    """Call ``read()`` until ``done(value)`` holds, then return the value (fails after
    ``seconds``: a bound on waiting, not a timing assertion)."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {seconds} s; last value: {value!r}")
        time.sleep(every)


def wait_for_task(client, task_id: str, *statuses: str) -> dict:
    statuses = statuses or ("completed", "failed", "cancelled")
    return wait_for(
        lambda: client.get(f"/api/v1/tasks/{task_id}").json(),
        lambda task: task["status"] in statuses,
    )
