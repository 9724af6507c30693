"""MCP servers as tool sources, against real MCP servers (``tests/mcp_test_server.py``, built
with the ``mcp`` package, each in a process of its own on 127.0.0.1, allowlisted): one of the
stateless 2026-07-28 revision and one that speaks only the older ``initialize`` handshake.
Registration and its safety checks, discovery (names mapped or skipped, the TTL), calls
through ``/tools/{name}/execute``, from an agent task and from chat with an approval, the
timeout, a failing tool, a server killed mid-call, and the circuit breaker."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from db.events import Event
from hub.services import mcp_servers as mcp_service
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent, make_task, wait_for, wait_for_task
from tests.mcp_test_server import TEST_HOST, TOO_LONG

URL = "/api/v1/mcp-servers"
APPROVALS = "/api/v1/approvals"
TOOLS = ["add", "big", "fail-now", "slow", "whoami"]  # the hub's names, after the mapping


@contextlib.contextmanager
def mcp_process(mode: str):
    """A test MCP server in its own process; yields (url, process)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_test_server", mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(process.stdout.readline().split()[1])
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "the MCP test server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def stateless():
    with mcp_process("stateless") as (url, _process):
        yield url


@pytest.fixture(scope="module")
def legacy():
    with mcp_process("legacy") as (url, _process):
        yield url


@pytest.fixture
def settings(settings):
    return settings.replace(outbound_allowlist=("127.0.0.1",))


@pytest.fixture(autouse=True)
def _fresh_breakers():
    mcp_service._breakers.clear()
    yield
    mcp_service._breakers.clear()


def register(client, url: str, **overrides) -> dict:
    body = {"id": "files", "url": url, "timeout_seconds": 5}
    body.update(overrides)
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def discovered(client, url: str, **overrides) -> dict:
    server = register(client, url, **overrides)
    response = client.post(f"{URL}/{server['id']}/discover")
    assert response.status_code == 200, response.text
    return response.json()


def execute(client, name: str, arguments: dict) -> dict:
    response = client.post(f"/api/v1/tools/{name}/execute", json={"arguments": arguments})
    assert response.status_code == 200, response.text
    return response.json()


# --- the registry ------------------------------------------------------------------------


def test_register_stores_credentials_write_only(client, stateless):
    response = client.post(
        URL,
        json={
            "id": "files",
            "url": stateless,
            "headers": {"X-Tenant": "acme"},
            "bearer_token": "sekrit-token-1",
        },
    )

    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/api/v1/mcp-servers/files"
    server = response.json()
    assert server == {
        "id": "files",
        "url": stateless,
        "header_names": ["X-Tenant"],
        "has_token": True,
        "timeout_seconds": 10.0,
        "requires_approval": False,
        "status": "new",
        "last_error": None,
        "protocol_version": None,
        "server_info": None,
        "tool_count": 0,
        "skipped_tools": [],
        "breaker": "closed",
        "discovered_at": None,
        "tools_expire_at": None,
        "source": "api",
        "created_at": server["created_at"],
    }
    assert client.get(f"{URL}/files").json() == server
    assert client.get(URL).json() == {"items": [server], "next_cursor": None}
    assert "sekrit" not in client.get(f"{URL}/files").text
    from db.mcp_servers import McpServer

    row = McpServer.get_by_id("files")
    assert "sekrit" not in (row.token_encrypted or "") and "acme" not in row.headers_encrypted
    assert [e.type for e in Event.select().where(Event.subject == "files")] == [
        "mcp_server.created"
    ]


def test_register_refuses_duplicates_and_bad_urls(client, stateless):
    register(client, stateless)
    again = client.post(URL, json={"id": "files", "url": stateless})
    assert_problem(again, 409, "mcp_server_exists")
    with_userinfo = client.post(URL, json={"id": "a", "url": "https://u:p@example.com/mcp"})
    assert_problem(with_userinfo, 422, "invalid_url")
    assert error_fields(with_userinfo) == {"body.url"}
    both = client.post(
        URL,
        json={
            "id": "b",
            "url": "https://example.com/mcp",
            "headers": {"Authorization": "Bearer x"},
            "bearer_token": "y",
        },
    )
    assert_problem(both, 422, "conflicting_credentials")
    underscore = client.post(URL, json={"id": "my_server", "url": "https://example.com/mcp"})
    assert error_fields(underscore) == {"body.id"}  # "__" separates server and tool


def test_a_loopback_url_is_refused_without_the_allowlist(client, stateless, settings):
    from hub.settings import current_settings, install

    before = current_settings()
    install(before.replace(outbound_allowlist=()))
    try:
        refused = client.post(URL, json={"id": "files", "url": stateless})
        assert_problem(refused, 422, "invalid_url")
        assert "loopback" in refused.json()["errors"][0]["message"]
        localhost = client.post(URL, json={"id": "files", "url": "http://localhost:1/mcp"})
        assert_problem(localhost, 422, "invalid_url")
    finally:
        install(before)
    # Registered while allowed, then the allowlist goes: the connection is refused.
    register(client, stateless)
    install(before.replace(outbound_allowlist=()))
    try:
        refused = client.post(f"{URL}/files/discover")
        assert_problem(refused, 422, "outbound_refused")
        assert "loopback" in refused.json()["detail"]
    finally:
        install(before)
    server = client.get(f"{URL}/files").json()
    assert server["status"] == "error" and "loopback" in server["last_error"]


def test_connections_go_to_the_checked_address(client, stateless, monkeypatch):
    """The name is resolved once, by the policy; the MCP client connects to that address
    (``mcp.test`` resolves nowhere else) and still names the host in ``Host``."""
    import ipaddress

    from hub.core import outbound

    asked = []

    async def resolve(host, port):
        asked.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(outbound, "resolve", resolve)
    url = stateless.replace("127.0.0.1", TEST_HOST)

    server = discovered(client, url)
    who = execute(client, "files__whoami", {})

    assert server["status"] == "ok" and who["status"] == "ok"
    assert json.loads(who["result"])["host"] == url.split("/")[2]  # mcp.test:<port>
    assert asked == [TEST_HOST, TEST_HOST]  # once per connection: discovery, then the call


def test_delete_removes_the_server_and_its_tools(client, stateless):
    discovered(client, stateless)
    assert client.get("/api/v1/tools/files__add").status_code == 200

    assert client.delete(f"{URL}/files").status_code == 204

    assert_problem(client.get(f"{URL}/files"), 404, "mcp_server_not_found")
    assert_problem(client.get("/api/v1/tools/files__add"), 404, "tool_not_found")
    assert_problem(client.delete(f"{URL}/files"), 404, "mcp_server_not_found")
    assert_problem(client.get(f"{URL}/files/tools"), 404, "mcp_server_not_found")
    types = [e.type for e in Event.select().where(Event.subject == "files").order_by(Event.id)]
    assert types == ["mcp_server.created", "mcp_server.discovered", "mcp_server.deleted"]


# --- discovery ---------------------------------------------------------------------------


@pytest.mark.parametrize("era", ["stateless", "legacy"])
def test_discover_lists_and_registers_the_tools(client, era, request):
    url = request.getfixturevalue(era)

    server = discovered(client, url)

    modern = era == "stateless"
    assert server["status"] == "ok" and server["last_error"] is None
    assert server["protocol_version"] == ("2026-07-28" if modern else "2025-11-25")
    assert server["server_info"] == {"name": f"test-{era}", "version": "1.0.0"}
    assert server["tool_count"] == 5
    assert server["skipped_tools"] == [
        {
            "name": TOO_LONG,
            "reason": f"its hub name 'files__{TOO_LONG}' is longer than 64 characters",
        }
    ]
    assert (server["tools_expire_at"] is not None) is modern  # the 60 s TTL is 2026's
    tools = client.get(f"{URL}/files/tools").json()
    assert [t["name"] for t in tools["items"]] == [f"files__{n}" for n in TOOLS]
    fail = tools["items"][2]
    assert (fail["remote_name"], fail["description"]) == ("Fail.Now", "Always fails.")
    add = tools["items"][0]
    assert add["parameters"]["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    listed = client.get("/api/v1/tools", params={"kind": "mcp"}).json()["items"]
    assert [t["name"] for t in listed] == [f"files__{n}" for n in TOOLS]
    assert listed[0]["endpoint"] == url and listed[0]["timeout_seconds"] == 5.0


def test_discover_of_an_unreachable_server_is_a_502_and_recorded(client):
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        register(client, f"http://127.0.0.1:{sock.getsockname()[1]}/mcp")
        response = client.post(f"{URL}/files/discover")

    assert_problem(response, 502, "mcp_server_unreachable")
    server = client.get(f"{URL}/files").json()
    assert server["status"] == "error" and server["last_error"]
    assert server["tool_count"] == 0


# --- calls -------------------------------------------------------------------------------


@pytest.mark.slow  # waits out a timeout or a dying server's process
@pytest.mark.parametrize("era", ["stateless", "legacy"])
def test_calls_through_execute(client, era, request):
    url = request.getfixturevalue(era)
    discovered(client, url, bearer_token="tok-123")
    discovered(client, url, id="quick", timeout_seconds=1)  # the same server, a short timeout

    ok = execute(client, "files__add", {"a": 2, "b": 3})
    assert (ok["status"], ok["result"], ok["error"]) == ("ok", {"result": 5}, None)
    assert ok["tool"] == "files__add" and ok["caller"].startswith("key:")
    failed = execute(client, "files__fail-now", {})
    assert failed["status"] == "error"
    assert "Fail.Now" in failed["error"]  # the server's own report of the failure
    slow = execute(client, "quick__slow", {"seconds": 30})
    assert slow["status"] == "error"  # two bounds of 1 s race: the hub's and the client's read
    assert slow["error"] in (
        "the tool took longer than 1 s",
        "the MCP server did not answer in time",
    )
    assert slow["duration_ms"] < 10_000  # the call was cut at the timeout (bound, not timing)
    who = execute(client, "files__whoami", {})
    # No structured content: the tool's one text block is the result, as the server wrote it.
    assert json.loads(who["result"])["authorization"] == "Bearer tok-123"
    invalid = client.post("/api/v1/tools/files__add/execute", json={"arguments": {"a": "x"}})
    assert error_fields(invalid) == {"body.arguments.a", "body.arguments"}
    history = client.get("/api/v1/tool-executions", params={"tool": "files__add"}).json()
    assert [e["id"] for e in history["items"]] == [ok["id"]]


def test_a_result_over_the_size_limit_is_a_tool_error(client, stateless):
    from hub.settings import current_settings, install

    discovered(client, stateless)
    before = current_settings()
    install(before.replace(outbound_max_response_bytes=1000))
    try:
        small = execute(client, "files__big", {"size": 10})
        big = execute(client, "files__big", {"size": 5000})
    finally:
        install(before)

    assert (small["status"], small["result"]) == ("ok", {"result": "x" * 10})
    assert big["status"] == "error" and "more than the 1000 allowed" in big["error"]


def test_headers_reach_the_server(client, stateless):
    discovered(client, stateless, headers={"X-Tenant": "acme"})

    who = execute(client, "files__whoami", {})

    assert json.loads(who["result"]) == {
        "authorization": None,
        "tenant": "acme",
        "host": stateless.split("/")[2],
    }


@pytest.mark.slow  # waits out a timeout or a dying server's process
def test_a_server_killed_mid_call_is_a_tool_error(client):
    with mcp_process("stateless") as (url, process):
        discovered(client, url, timeout_seconds=20)
        threading.Timer(0.5, process.kill).start()

        execution = execute(client, "files__slow", {"seconds": 60})

    assert execution["status"] == "error"
    assert "took longer" not in execution["error"]  # it failed at once, not at the timeout
    assert execution["duration_ms"] < 15_000


@pytest.mark.slow  # waits out a timeout or a dying server's process
def test_the_breaker_opens_after_repeated_failures(client):
    with mcp_process("stateless") as (url, _process):
        discovered(client, url)
    # The server is gone now: each call fails to connect until the breaker opens.
    errors = [execute(client, "files__add", {"a": 1, "b": 1})["error"] for _ in range(6)]

    assert all("could not talk to the MCP server" in e for e in errors[:5]), errors
    assert errors[5].startswith("the MCP server 'files' failed 5 times in a row")
    assert client.get(f"{URL}/files").json()["breaker"] == "open"


def test_an_mcp_tool_cannot_be_deleted_or_shadowed_as_an_http_tool(client, stateless):
    discovered(client, stateless)

    assert_problem(client.delete("/api/v1/tools/files__add"), 409, "mcp_tool")
    shadow = client.post(
        "/api/v1/tools",
        json={"name": "files__add", "description": "x", "endpoint": "https://example.com/x"},
    )
    assert_problem(shadow, 409, "tool_exists")


# --- agents ------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ["stateless", "legacy"])
def test_an_agent_task_calls_mcp_tools(client, era, request):
    url = request.getfixturevalue(era)
    discovered(client, url)
    discovered(client, url, id="quick", timeout_seconds=1)
    agent = make_agent(client, model="builtin/scripted", tools=["files__add", "quick__slow"])
    script = (
        '/tool files__add {"a": 20, "b": 22}\n'
        '/tool quick__slow {"seconds": 30}\n'
        "/tool files__whoami {}\n"
        "/reply done"
    )

    done = wait_for_task(client, make_task(client, agent_id=agent["id"], description=script)["id"])

    assert done["status"] == "completed", done
    add, slow, whoami = [s for s in done["steps"] if s["kind"] == "tool"]
    assert (add["status"], add["output"]) == ("ok", {"result": 42})
    # Two bounds of 1 s race: the call's own (the hub's) and the MCP client's read timeout.
    assert slow["status"] == "error"
    assert slow["error"] in (
        "the tool took longer than 1 s",
        "the MCP server did not answer in time",
    )
    # Not in the agent's tools: refused when called, although the server offers it.
    assert whoami["error"] == "no tool named 'files__whoami' is available to this agent"
    executions = client.get("/api/v1/tool-executions", params={"task_id": done["id"]}).json()
    assert sorted(e["tool"] for e in executions["items"]) == ["files__add", "quick__slow"]


def test_a_tool_group_can_hold_mcp_tools(client, stateless):
    discovered(client, stateless)

    response = client.post("/api/v1/tool-groups", json={"name": "kit", "tools": ["files__add"]})

    assert response.status_code == 201, response.text


def test_an_approval_guards_an_agent_task_call(client, legacy):
    discovered(client, legacy, requires_approval=True)
    agent = make_agent(client, model="builtin/scripted", tools=["files__add"])
    script = '/tool files__add {"a": 1, "b": 2}\n/reply finished'
    task = make_task(client, agent_id=agent["id"], description=script)

    waiting = wait_for_task(client, task["id"], "waiting_approval")
    approval = client.get(f"{APPROVALS}/{waiting['approval_id']}").json()
    assert (approval["tool"], approval["arguments"]) == ("files__add", {"a": 1, "b": 2})
    client.post(f"{APPROVALS}/{approval['id']}/approve")

    done = wait_for_task(client, task["id"])
    assert done["status"] == "completed", done
    step = next(s for s in done["steps"] if s["kind"] == "tool")
    assert (step["status"], step["output"], step["approval_id"]) == (
        "ok",
        {"result": 3},
        approval["id"],
    )


def test_a_chat_turn_calls_an_mcp_tool_after_approval(client, stateless):
    discovered(client, stateless, requires_approval=True)
    agent = make_agent(client, model="builtin/scripted", tools=["files__add"])
    session = client.post("/api/v1/sessions", json={"agent_id": agent["id"]}).json()
    script = '/tool files__add {"a": 4, "b": 5}\n/reply after'

    reply = client.post(f"/api/v1/sessions/{session['id']}/messages", json={"content": script})

    turn = reply.json()["turn"]
    assert turn["status"] == "waiting_approval"
    client.post(f"{APPROVALS}/{turn['approval_id']}/approve")
    done = wait_for(
        lambda: client.get(f"/api/v1/turns/{turn['id']}").json(),
        lambda t: t["status"] == "completed",
    )
    tool_step = next(s for s in done["steps"] if s["kind"] == "tool")
    assert (tool_step["status"], tool_step["output"]) == ("ok", {"result": 9})


# --- the listing's TTL, and shutdown -----------------------------------------------------


def test_a_call_after_the_ttl_re_reads_the_listing(client, stateless, clock):
    server = discovered(client, stateless)
    assert server["tools_expire_at"] == "2026-01-01T12:01:00.000Z"  # the server's 60 s TTL

    execute(client, "files__add", {"a": 1, "b": 1})  # fresh: no listing read
    clock.advance(seconds=61)
    execution = execute(client, "files__add", {"a": 1, "b": 2})

    assert execution["result"] == {"result": 3}
    after = client.get(f"{URL}/files").json()
    assert after["discovered_at"] == "2026-01-01T12:01:01.000Z"
    assert after["tools_expire_at"] == "2026-01-01T12:02:01.000Z"
    types = [e.type for e in Event.select().where(Event.subject == "files").order_by(Event.id)]
    assert types == ["mcp_server.created", "mcp_server.discovered", "mcp_server.discovered"]


@pytest.mark.slow  # waits out a timeout or a dying server's process
def test_a_hanging_call_does_not_hold_up_shutdown(app, keyring, stateless):
    from starlette.testclient import TestClient

    from tests.conftest import auth

    with TestClient(app, headers=auth(keyring["admin"])) as hub:
        discovered(hub, stateless, timeout_seconds=60)
        agent = make_agent(hub, model="builtin/scripted", tools=["files__slow"])
        script = '/tool files__slow {"seconds": 120}'
        task = make_task(hub, agent_id=agent["id"], description=script)
        wait_for(
            lambda: hub.get(f"/api/v1/tasks/{task['id']}").json(),
            lambda t: t["status"] == "running" and t["steps"],
        )
        time.sleep(0.3)  # the call is in flight
        started = time.monotonic()
    # Leaving the client shut the hub down: its workers stopped without waiting for the call.
    assert time.monotonic() - started < 30  # a bound far below the 60 s timeout, not a timing


def test_a_successful_discovery_closes_the_breaker(client, stateless):
    discovered(client, stateless)
    for _ in range(mcp_service.BREAKER_FAILURES):
        mcp_service.breaker("files").record_failure()
    paused = execute(client, "files__add", {"a": 1, "b": 1})
    assert paused["error"].startswith("the MCP server 'files' failed 5 times in a row")

    again = client.post(f"{URL}/files/discover")  # neither blocked nor counted by the breaker

    assert again.status_code == 200 and again.json()["breaker"] == "closed"
    assert execute(client, "files__add", {"a": 1, "b": 1})["result"] == {"result": 2}


@pytest.mark.slow  # waits out a timeout or a dying server's process
def test_an_agent_loop_goes_on_when_the_server_dies_mid_call(client):
    with mcp_process("legacy") as (url, process):
        discovered(client, url, timeout_seconds=20)
        agent = make_agent(client, model="builtin/scripted", tools=["files__slow"])
        script = '/tool files__slow {"seconds": 60}\n/reply carried on'
        task = make_task(client, agent_id=agent["id"], description=script)
        wait_for(
            lambda: client.get(f"/api/v1/tasks/{task['id']}").json(),
            lambda t: t["status"] == "running" and t["steps"],
        )
        time.sleep(0.3)  # the call is in flight
        process.kill()

        done = wait_for_task(client, task["id"])

    assert done["status"] == "completed", done
    assert done["result"] == "carried on"
    step = next(s for s in done["steps"] if s["kind"] == "tool")
    assert step["status"] == "error" and "took longer" not in step["error"]
