"""A corpus of hostile bodies against every operation that takes a JSON body (issue 13, break
9): each answer is a 4xx problem, never a 5xx, and nothing that is not portable JSON is kept.
Also the query side: cursors and timestamps that overflow."""

from __future__ import annotations

import base64
import json
import re

import pytest
from starlette.testclient import TestClient

from hub.app import create_app
from hub.core import spec
from hub.services import keys

DEEP = "[" * 1000 + "]" * 1000
CORPUS = {
    "nested-1000": (DEEP, "application/json"),
    "nested-65": ('{"a":' * 65 + "1" + "}" * 65, "application/json"),
    "nan": ('{"payload": {"x": NaN}}', "application/json"),
    "infinity": ('{"payload": {"x": -Infinity}}', "application/json"),
    "overflowing-float": ('{"payload": {"x": 1e400}}', "application/json"),
    "integer-5000-digits": ('{"payload": {"x": ' + "9" * 5000 + "}}", "application/json"),
    "integer-over-64-bits": ('{"priority": 18446744073709551616}', "application/json"),
    "lone-surrogate": ('{"name": "\\ud800"}', "application/json"),
    "not-utf8": (b'{"name": "\xff\xfe"}', "application/json"),
    "truncated": ('{"name": ', "application/json"),
    "empty": ("", "application/json"),
    "no-content-type": ('{"name": "x"}', None),
    "text-plain": ('{"name": "x"}', "text/plain"),
}


def operations_with_bodies() -> list[tuple[str, str]]:
    found = []
    for path, item in spec.load()["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "requestBody" in op:
                content = op["requestBody"].get("content", {})
                if any("json" in media for media in content):
                    found.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return found


OPERATIONS = operations_with_bodies()


@pytest.fixture(scope="module")
def hostile_client(module_settings):
    app = create_app(module_settings.replace(workers=0))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {keys.create('hostile', 'admin')[1]}"
        client.headers["X-Confirm"] = "yes"
        yield client


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[" ".join(o) for o in OPERATIONS])
def test_no_hostile_body_gets_a_5xx(hostile_client, method, path):
    for name, (body, media_type) in CORPUS.items():
        headers = {"Content-Type": media_type} if media_type else {}
        content = body.encode() if isinstance(body, str) else body
        response = hostile_client.request(method, path, content=content, headers=headers)
        assert response.status_code < 500, (name, response.status_code, response.text[:300])
        if response.status_code >= 400 and not path.startswith("/v1/"):
            assert response.headers["content-type"].startswith("application/problem+json"), name


def test_nan_and_overflow_name_the_field(hostile_client):
    for literal, message in (
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity is not a JSON number"),
        ("1e400", "the number is too large to represent"),
        ("9" * 5000, "an integer of more than 4300 digits"),
    ):
        response = hostile_client.post(
            "/api/v1/events",
            content=f'{{"type": "x.y", "payload": {{"deep": [1, {literal}]}}}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        (error,) = response.json()["errors"]
        assert error["field"] == "body.payload.deep.1"
        assert error["message"].startswith(message)
    events = hostile_client.get("/api/v1/events", params={"type": "x.y"}).json()["items"]
    assert events == []


def test_depth_is_limited_with_the_field_named(hostile_client):
    nested = {"a": 1}
    for _ in range(70):
        nested = {"n": nested}
    response = hostile_client.post("/api/v1/events", json={"type": "x.y", "payload": nested})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["message"] == "nested deeper than 64 levels"
    assert response.json()["errors"][0]["field"].startswith("body.payload.n.n")


def cursor(value) -> str:
    raw = json.dumps({"k": value}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "value", [2**63, -(2**63) - 1, "a\x00b", "NaN"], ids=["2^63", "-2^63-1", "nul", "nan"]
)
def test_cursors_that_no_row_could_give_are_400(hostile_client, value):
    raw = cursor(value) if value != "NaN" else base64.urlsafe_b64encode(b'{"k": NaN}').decode()
    for path in ("/api/v1/events", "/api/v1/tasks", "/api/v1/agents"):
        response = hostile_client.get(path, params={"cursor": raw})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["errors"][0]["field"] == "query.cursor"


def test_timestamps_out_of_range_in_utc_are_400(hostile_client):
    response = hostile_client.get("/api/v1/events", params={"since": "9999-12-31T23:59:59-14:00"})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "query.since"
    response = hostile_client.post(
        "/api/v1/tasks", json={"description": "x", "run_at": "0001-01-01T00:00:00+14:00"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "body.run_at"


def test_an_old_year_is_written_back_as_rfc3339(hostile_client):
    agent = {"id": "old-year", "name": "A", "model": "builtin/echo"}
    assert hostile_client.post("/api/v1/agents", json=agent).status_code in (201, 409)
    task = hostile_client.post(
        "/api/v1/tasks",
        json={"description": "x", "agent_id": "old-year", "run_at": "0870-08-06T10:00:00Z"},
    )
    assert task.status_code == 201, task.text
    assert task.json()["run_at"] == "0870-08-06T10:00:00.000Z"
    stored = hostile_client.get(task.headers["location"]).json()  # read back from the row
    assert stored["run_at"] == "0870-08-06T10:00:00.000Z"


@pytest.mark.parametrize("run_at", ["0000-12-31T23:00:00Z", "10000-01-01T00:00:00Z"])
def test_a_year_outside_1_to_9999_is_400_naming_the_field(hostile_client, run_at):
    response = hostile_client.post("/api/v1/tasks", json={"description": "x", "run_at": run_at})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "body.run_at"
