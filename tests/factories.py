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
