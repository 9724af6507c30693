"""Every error path reachable from outside answers a well-formed problem."""

from __future__ import annotations

import json
import logging

import pytest

from tests.assertions import assert_problem


def test_unknown_path_is_404(client):
    assert_problem(client.get("/api/v1/nothing-here"), 404, "route_not_found")


def test_wrong_method_is_405_with_the_spec_methods(client):
    body = assert_problem(client.put("/api/v1/agents"), 405, "method_not_allowed")
    assert "GET, POST" in body["detail"]
    assert client.put("/api/v1/agents").headers["allow"] == "GET, POST"
    assert client.delete("/api/v1/agents/seed").headers["allow"] == "POST"
    assert client.get("/api/v1/agents/seed").headers["allow"] == "POST"


def test_malformed_json_is_400(client):
    response = client.post(
        "/api/v1/agents", content=b'{"id": ', headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 400, "malformed_json")
    assert body["errors"][0]["field"] == "body"


def test_non_utf8_json_is_400_not_500(client):
    response = client.post(
        "/api/v1/agents",
        content=b'{"id": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


def test_lone_surrogate_is_400(client):
    response = client.post(
        "/api/v1/agents",
        content=b'{"id": "a", "name": "\\ud800", "model": "builtin/echo"}',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400)


def test_wrong_content_type_is_415(client):
    response = client.post(
        "/api/v1/agents", content=b"id=a", headers={"Content-Type": "text/plain"}
    )
    assert_problem(response, 415, "unsupported_media_type")


def test_body_over_the_limit_is_413_before_parsing(client):
    big = b'{"id": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    response = client.post(
        "/api/v1/agents", content=big, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


def test_streamed_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(20):
            yield b"x" * 100_000

    response = client.post(
        "/api/v1/agents", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


def test_wrong_typed_path_parameter_is_400_naming_it(client):
    body = assert_problem(
        client.post("/api/v1/agents/assistant/versions/abc/promote"), 400, "validation_error"
    )
    assert body["errors"][0]["field"] == "path.version"


def test_invalid_query_parameter_is_400_naming_it(client):
    body = assert_problem(client.get("/api/v1/agents?limit=0"), 400, "validation_error")
    assert body["errors"][0]["field"] == "query.limit"
    body = assert_problem(client.get("/api/v1/agents?unknown=1"), 400)
    assert body["errors"][0]["field"] == "query.unknown"


def test_unhandled_exception_is_500_without_internals(client, monkeypatch):
    from hub.services import agents

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(agents, "seed", explode)
    body = assert_problem(client.post("/api/v1/agents/seed"), 500, "internal_error")
    assert "hunter2" not in json.dumps(body)
    assert "RuntimeError" not in json.dumps(body)


def test_request_id_is_honoured_or_generated(client):
    given = client.get("/health/live", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/health/live")
    assert made.headers["x-request-id"].startswith("req_")
    unsafe = client.get("/health/live", headers={"X-Request-Id": "bad id\twith tab"})
    assert unsafe.headers["x-request-id"].startswith("req_")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_one_json_access_log_line_per_request(client):
    from hub.core.logs import JSONFormatter

    collector = _Collect()
    logger = logging.getLogger("aether.access")
    logger.addHandler(collector)
    logger.setLevel(logging.INFO)
    try:
        client.get("/api/v1/agents", headers={"X-Request-Id": "log-me-1"})
    finally:
        logger.removeHandler(collector)
    assert len(collector.records) == 1
    line = json.loads(JSONFormatter().format(collector.records[0]))
    assert line["request_id"] == "log-me-1"
    assert line["operation_id"] == "list_agents"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert line["actor"].startswith("key_")
    assert "authorization" not in json.dumps(line).lower()


@pytest.mark.parametrize("limit", [2])
def test_rate_limit_per_key_answers_429_with_retry_after(app, client, keyring, limit):
    app.runtime.apply_overrides({"rate_limit_per_minute": limit})
    for _ in range(limit):
        assert client.get("/api/v1/agents").status_code == 200
    response = client.get("/api/v1/agents")
    assert_problem(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1
    other = client.get("/api/v1/agents", headers={"Authorization": f"Bearer {keyring['viewer']}"})
    assert other.status_code == 200, "the limit is per key"
    assert client.get("/health/live").status_code == 200, "public probes are not limited"
