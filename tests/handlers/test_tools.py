"""Tools: the registry (built-ins and HTTP tools), execution with schema validation, history."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from db.tools import Tool
from hub.services import tools as tool_service
from tests.assertions import assert_problem, error_fields

TOOLS = "/api/v1/tools"
BUILTINS = [
    "create_task",
    "current_time",
    "http_request",
    "memory_search",
    "memory_store",
    "notify",
    "start_workflow",
]


@pytest.fixture
def settings(settings):
    return settings.replace(outbound_allowlist=("127.0.0.1",))


@pytest.fixture
def endpoint():
    """A local HTTP service that echoes what it receives as JSON."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            seen.append({"path": self.path, "body": body, "auth": self.headers["authorization"]})
            status = 500 if body.get("fail") else 200
            payload = json.dumps({"got": body}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    server.shutdown()


def register(client, **overrides) -> dict:
    body = {
        "name": "lookup",
        "description": "Look a thing up.",
        "endpoint": "http://127.0.0.1:9/hook",
        "parameters": {
            "type": "object",
            "required": ["q"],
            "properties": {"q": {"type": "string", "minLength": 1}},
        },
    }
    body.update(overrides)
    response = client.post(TOOLS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_builtins_are_listed(client):
    items = client.get(TOOLS).json()["items"]
    assert [t["name"] for t in items] == BUILTINS
    assert {t["kind"] for t in items} == {"builtin"}
    http = next(t for t in items if t["name"] == "http_request")
    assert http["requires_approval"] is True


def test_register_an_http_tool_keeps_its_headers_secret(client, endpoint):
    url, _ = endpoint
    tool = register(client, endpoint=url, headers={"Authorization": "Bearer s3cret"})

    assert tool == {
        "name": "lookup",
        "kind": "http",
        "description": "Look a thing up.",
        "parameters": tool["parameters"],
        "endpoint": url,
        "method": "POST",
        "header_names": ["Authorization"],
        "timeout_seconds": 10.0,
        "requires_approval": False,
        "source": "api",
        "created_at": tool["created_at"],
    }
    assert client.get(f"{TOOLS}/lookup").json() == tool
    stored = Tool.get_by_id("lookup").headers_encrypted
    assert "s3cret" not in stored
    names = [t["name"] for t in client.get(TOOLS, params={"kind": "http"}).json()["items"]]
    assert names == ["lookup"]


def test_executing_an_http_tool_calls_its_endpoint(client, endpoint):
    url, seen = endpoint
    register(client, endpoint=url, headers={"Authorization": "Bearer s3cret"})

    response = client.post(f"{TOOLS}/lookup/execute", json={"arguments": {"q": "cats"}})

    assert response.status_code == 200, response.text
    execution = response.json()
    assert execution["status"] == "ok" and execution["result"] == {"got": {"q": "cats"}}
    assert execution["caller"].startswith("key:key_")
    assert seen == [{"path": "/hook", "body": {"q": "cats"}, "auth": "Bearer s3cret"}]
    history = client.get("/api/v1/tool-executions", params={"tool": "lookup"}).json()["items"]
    assert [h["id"] for h in history] == [execution["id"]]


def test_an_execution_reports_its_duration_in_whole_milliseconds(client, monkeypatch):
    ticks = iter([100.0, 100.0427])  # the tool's monotonic clock: 42.7 ms
    monkeypatch.setattr(tool_service, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))

    execution = client.post(f"{TOOLS}/current_time/execute", json={"arguments": {}}).json()

    assert execution["duration_ms"] == 43
    listed = client.get("/api/v1/tool-executions").json()["items"]
    assert [item["duration_ms"] for item in listed] == [43]


def test_an_endpoint_error_is_a_failed_execution(client, endpoint):
    url, _ = endpoint
    register(client, endpoint=url, parameters={"type": "object"})

    execution = client.post(f"{TOOLS}/lookup/execute", json={"arguments": {"fail": True}}).json()

    assert execution["status"] == "error"
    assert execution["error"].startswith("the endpoint answered HTTP 500")


def test_arguments_are_validated_against_the_schema(client):
    register(client)

    response = client.post(f"{TOOLS}/lookup/execute", json={"arguments": {"q": 5}})

    assert_problem(response, 422, "invalid_arguments")
    assert error_fields(response) == {"body.arguments.q"}
    missing = client.post(f"{TOOLS}/lookup/execute", json={"arguments": {}})
    assert error_fields(missing) == {"body.arguments"}
    assert client.get("/api/v1/tool-executions").json()["items"] == []


def test_builtin_current_time(client, clock):
    response = client.post(
        f"{TOOLS}/current_time/execute", json={"arguments": {"timezone": "Asia/Tokyo"}}
    )
    result = response.json()["result"]
    assert result == {
        "utc": "2026-01-01T12:00:00Z",
        "local": "2026-01-01T21:00:00+09:00",
        "timezone": "Asia/Tokyo",
        "unix": 1767268800.0,
    }


def test_http_request_refuses_private_addresses_without_the_allowlist(client):
    response = client.post(
        f"{TOOLS}/http_request/execute",
        json={"arguments": {"url": "http://169.254.169.254/latest/meta-data"}},
    )
    execution = response.json()
    assert execution["status"] == "error" and "link-local" in execution["error"]


def test_notify_and_create_task_builtins(client):
    client.post("/api/v1/agents", json={"id": "doer", "name": "Doer", "model": "builtin/echo"})

    note = client.post(
        f"{TOOLS}/notify/execute", json={"arguments": {"title": "Hi", "severity": "warning"}}
    ).json()
    task = client.post(
        f"{TOOLS}/create_task/execute",
        json={"arguments": {"description": "Do it", "agent_id": "doer"}},
    ).json()

    assert note["status"] == "ok" and note["result"]["notification_id"].startswith("ntf_")
    assert task["status"] == "ok" and task["result"]["agent_id"] == "doer"
    [made] = client.get("/api/v1/notifications", params={"severity": "warning"}).json()["items"]
    assert made["title"] == "Hi" and made["kind"] == "agent"


def test_conflicts_and_removal(client):
    register(client)
    assert_problem(client.post(TOOLS, json={**_body(), "name": "lookup"}), 409, "tool_exists")
    assert_problem(client.post(TOOLS, json={**_body(), "name": "notify"}), 409, "tool_exists")
    assert_problem(client.delete(f"{TOOLS}/notify"), 409, "builtin_tool")

    assert client.delete(f"{TOOLS}/lookup").status_code == 204

    assert_problem(client.delete(f"{TOOLS}/lookup"), 404, "tool_not_found")
    assert_problem(client.get(f"{TOOLS}/lookup"), 404, "tool_not_found")
    assert_problem(client.post(f"{TOOLS}/lookup/execute", json={}), 404, "tool_not_found")


def test_an_invalid_parameters_schema_is_422(client):
    response = client.post(TOOLS, json={**_body(), "parameters": {"type": "string"}})
    assert_problem(response, 422, "invalid_schema")
    assert error_fields(response) == {"body.parameters"}
    bad = client.post(TOOLS, json={**_body(), "parameters": {"type": 12}})
    assert_problem(bad, 422, "invalid_schema")


def test_list_pages_by_name(client):
    first = client.get(TOOLS, params={"limit": 3}).json()
    rest = client.get(TOOLS, params={"cursor": first["next_cursor"]}).json()
    assert [t["name"] for t in first["items"] + rest["items"]] == BUILTINS
    assert rest["next_cursor"] is None


def _body() -> dict:
    return {"name": "x", "description": "d", "endpoint": "https://example.com/hook"}


def test_viewers_see_no_header_values_of_http_request_calls(client, keyring):
    """The model (or a caller) may hand ``http_request`` a credential in a header: a viewer
    reads the execution with the values replaced (issue 13); an operator sees them."""
    arguments = {
        "url": "http://169.254.169.254/latest",
        "headers": {"Authorization": "Bearer upstream-secret", "Accept": "text/plain"},
    }
    ran = client.post(f"{TOOLS}/http_request/execute", json={"arguments": arguments}).json()
    viewer = {"Authorization": f"Bearer {keyring['viewer']}"}

    listed = client.get("/api/v1/tool-executions", headers=viewer).json()["items"]
    (seen,) = [x for x in listed if x["id"] == ran["id"]]
    assert seen["arguments"]["headers"] == {"Authorization": "***", "Accept": "***"}
    assert seen["arguments"]["url"] == arguments["url"]
    assert "upstream-secret" not in client.get("/api/v1/tool-executions", headers=viewer).text
    operator = {"Authorization": f"Bearer {keyring['operator']}"}
    full = client.get("/api/v1/tool-executions", headers=operator).json()["items"]
    assert next(x for x in full if x["id"] == ran["id"])["arguments"] == arguments


def test_a_rejected_secret_is_not_echoed_in_the_problem(client):
    response = client.post(
        "/api/v1/integrations",
        json={"kind": "generic", "slug": "echo-test", "webhook_secret": "tiny"},
    )
    assert_problem(response, 400)
    assert "tiny" not in response.text
    assert error_fields(response) == {"body.webhook_secret"}
