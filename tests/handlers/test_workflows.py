"""Workflows: versioned definitions checked whole, runs of every step kind on the offline
models executed by the task workers, approvals bound to what they show, retry that never
re-runs a completed step, cancel, rerun, pinned versions."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from db.tools import ToolExecution
from hub.runtime.worker import sweep_approvals
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent, wait_for

WORKFLOWS = "/api/v1/workflows"
RUNS = "/api/v1/workflow-runs"
CONFIRM = {"X-Confirm": "yes"}


@pytest.fixture
def settings(settings):
    return settings.replace(
        outbound_allowlist=("127.0.0.1",), worker_poll_seconds=0.05, task_backoff_seconds=0.05
    )


@pytest.fixture
def endpoint():
    """A local HTTP service answering 500 while ``state["fail"]`` holds, else what it got."""
    state = {"fail": False, "calls": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            state["calls"] += 1
            payload = json.dumps({"got": body}).encode()
            self.send_response(500 if state["fail"] else 200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()


def http_tool(client, endpoint, name="publish") -> str:
    body = {
        "name": name,
        "description": "Publish a text.",
        "endpoint": endpoint["url"],
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    }
    response = client.post("/api/v1/tools", json=body)
    assert response.status_code == 201, response.text
    return name


def define(client, steps, **extra) -> dict:
    body = {"id": extra.pop("id", "flow"), "steps": steps, **extra}
    response = client.post(WORKFLOWS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def start(client, workflow_id="flow", run_input=None, **kw) -> dict:
    response = client.post(f"{WORKFLOWS}/{workflow_id}/runs", json={"input": run_input or {}}, **kw)
    assert response.status_code == 201, response.text
    return response.json()


def run_of(client, run_id) -> dict:
    return client.get(f"{RUNS}/{run_id}").json()


def wait_run(client, run_id, *statuses) -> dict:
    statuses = statuses or ("completed", "failed", "cancelled")
    return wait_for(lambda: run_of(client, run_id), lambda run: run["status"] in statuses)


def wait_step(client, run_id, step_id, status) -> dict:
    def step(run):
        return next((s for s in run["steps"] if s["step_id"] == step_id), {})

    return step(
        wait_for(lambda: run_of(client, run_id), lambda run: step(run).get("status") == status)
    )


def steps(run) -> dict:
    return {step["step_id"]: step for step in run["steps"]}


def executions(tool: str) -> int:
    return ToolExecution.select().where(ToolExecution.tool == tool).count()


def approve(client, approval_id, approve=True, comment=None):
    verb = "approve" if approve else "deny"
    body = {"comment": comment} if comment else {}
    response = client.post(f"/api/v1/approvals/{approval_id}/{verb}", json=body)
    assert response.status_code == 200, response.text


# --- definitions ---------------------------------------------------------------------------


def test_a_definition_is_versioned_and_each_version_kept(client):
    agent = make_agent(client)["id"]
    created = define(
        client,
        [{"id": "ask", "kind": "agent", "agent_id": agent, "prompt": "Hello {{ input.name }}"}],
    )
    assert created["version"] == 1 and len(created["sha256"]) == 64
    assert created["input_schema"] == {"type": "object"} and created["output"] is None

    body = {
        "steps": [
            {"id": "ask", "kind": "agent", "agent_id": agent, "prompt": "Hi {{ input.name }}"}
        ]
    }
    etag = client.get(f"{WORKFLOWS}/flow").headers["ETag"]
    updated = client.put(f"{WORKFLOWS}/flow", json=body, headers={"If-Match": etag}).json()
    assert updated["version"] == 2 and updated["sha256"] != created["sha256"]
    same = client.put(f"{WORKFLOWS}/flow", json=body).json()
    assert same["version"] == 2  # nothing changed: no version
    stale = client.put(f"{WORKFLOWS}/flow", json=body, headers={"If-Match": etag})
    assert_problem(stale, 412)

    versions = client.get(f"{WORKFLOWS}/flow/versions").json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["sha256"] == created["sha256"]
    assert versions[1]["definition"]["steps"][0]["prompt"] == "Hello {{ input.name }}"
    assert_problem(client.post(WORKFLOWS, json={"id": "flow", **body}), 409, "workflow_exists")


def test_yaml_is_accepted_and_aliases_are_not(client):
    document = b"""
id: from-yaml
name: From YAML
steps:
  - id: now
    kind: tool
    tool: current_time
    arguments: {timezone: UTC}
"""
    headers = {"Content-Type": "application/yaml"}
    response = client.post(WORKFLOWS, content=document, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["steps"][0]["arguments"] == {"timezone": "UTC"}

    bomb = b"id: bomb\na: &a [x, x]\nb: &b [*a, *a]\nsteps: [*b]\n"
    refused = client.post(WORKFLOWS, content=bomb, headers=headers)
    assert "aliases" in assert_problem(refused, 400, "malformed_yaml")["detail"]
    wrong = client.post(WORKFLOWS, content=b"id: x\nsteps: []\n", headers=headers)
    assert "body.steps" in error_fields(wrong)


def test_every_problem_of_a_definition_is_named_by_its_path(client):
    agent = make_agent(client)["id"]
    response = client.post(
        WORKFLOWS,
        json={
            "id": "broken",
            "steps": [
                {"id": "a", "kind": "agent", "agent_id": "nobody", "prompt": "{{ input.x "},
                {"id": "b", "kind": "tool", "tool": "no_such_tool", "next": None},
                {"id": "c", "kind": "condition", "predicate": ".input | ((", "then": "a"},
                {"id": "d", "kind": "tool", "tool": "http_request"},
            ],
        },
    )
    problem = assert_problem(response, 422, "invalid_workflow")
    fields = {e["field"] for e in problem["errors"]}
    assert "body.steps[2]" in fields or "body.steps[3]" in fields  # unreachable
    shapes = client.post(
        WORKFLOWS,
        json={
            "id": "cyclic",
            "steps": [
                {"id": "a", "kind": "tool", "tool": "current_time", "next": "b"},
                {"id": "b", "kind": "tool", "tool": "current_time", "next": "a"},
            ],
        },
    )
    assert "cycle" in assert_problem(shapes, 422, "invalid_workflow")["errors"][0]["message"]
    unknown = client.post(
        WORKFLOWS,
        json={"id": "u", "steps": [{"id": "a", "kind": "tool", "tool": "x", "next": "zz"}]},
    )
    assert error_fields(unknown) == {"body.steps[0].next"}

    contents = client.post(
        WORKFLOWS,
        json={
            "id": "contents",
            "steps": [
                {"id": "a", "kind": "agent", "agent_id": "nobody", "prompt": "{{ input.x "},
                {"id": "b", "kind": "tool", "tool": "no_such_tool"},
                {"id": "c", "kind": "condition", "predicate": ".input | ((("},
                {"id": "d", "kind": "tool", "tool": "http_request"},
                {"id": "e", "kind": "agent", "agent_id": agent, "prompt": "ok", "tool": "x"},
            ],
            "input_schema": {"type": "no-such-type"},
        },
    )
    assert error_fields(contents) >= {
        "body.steps[4].tool",  # not a member of an agent step
    }
    contents = client.post(
        WORKFLOWS,
        json={
            "id": "contents",
            "steps": [
                {"id": "a", "kind": "agent", "agent_id": "nobody", "prompt": "{{ input.x "},
                {"id": "b", "kind": "tool", "tool": "no_such_tool"},
                {"id": "c", "kind": "condition", "predicate": ".input | ((("},
                {"id": "d", "kind": "tool", "tool": "http_request"},
            ],
            "input_schema": {"type": "no-such-type"},
        },
    )
    assert error_fields(contents) == {
        "body.input_schema",
        "body.steps[0].prompt",
        "body.steps[0].agent_id",
        "body.steps[1].tool",
        "body.steps[2].predicate",
        "body.steps[3].tool",  # needs approval: no approval step guards it
    }


def test_branches_that_meet_and_approvals_a_path_avoids_are_refused(client):
    meet = client.post(
        WORKFLOWS,
        json={
            "id": "meet",
            "steps": [
                {"id": "fan", "kind": "parallel", "branches": ["a", "b"]},
                {"id": "a", "kind": "tool", "tool": "current_time"},  # runs on into b
                {"id": "b", "kind": "tool", "tool": "current_time", "next": None},
            ],
        },
    )
    assert "end each branch" in assert_problem(meet, 422)["errors"][0]["message"]
    around = client.post(
        WORKFLOWS,
        json={
            "id": "around",
            "steps": [
                {"id": "check", "kind": "condition", "predicate": ".input.go", "then": "ok"},
                {"id": "ok", "kind": "approval", "guards": "act"},
                {"id": "act", "kind": "tool", "tool": "current_time"},
            ],
        },
    )
    # ``else`` defaults to the next step (the approval), so every path passes it: accepted
    assert around.status_code == 201, around.text
    bypass = client.post(
        WORKFLOWS,
        json={
            "id": "bypass",
            "steps": [
                {"id": "check", "kind": "condition", "predicate": ".input.go", "else": "act"},
                {"id": "ok", "kind": "approval", "guards": "act"},
                {"id": "act", "kind": "tool", "tool": "current_time"},
            ],
        },
    )
    assert error_fields(bypass) == {"body.steps[1].guards"}


def test_a_workflow_with_running_runs_is_not_deleted(client):
    define(client, [{"id": "pause", "kind": "wait", "seconds": 3600}])
    run = start(client)
    assert_problem(client.delete(f"{WORKFLOWS}/flow"), 409, "workflow_in_use")
    client.post(f"{RUNS}/{run['id']}/cancel", headers=CONFIRM)
    assert client.delete(f"{WORKFLOWS}/flow").status_code == 204
    assert run_of(client, run["id"])["status"] == "cancelled"  # history stays


# --- runs ------------------------------------------------------------------------------------


def test_every_step_kind_runs_to_completion_on_the_offline_models(client):
    agent = make_agent(client)["id"]
    define(
        client,
        [
            {
                "id": "triage",
                "kind": "agent",
                "agent_id": agent,
                "prompt": "Triage {{ input.title }}",
            },
            {
                "id": "is-bug",
                "kind": "condition",
                "predicate": '.steps.triage.output | test("crash")',
                "else": "done",
            },
            {"id": "fan", "kind": "parallel", "branches": ["clock", "nap"]},
            {
                "id": "clock",
                "kind": "tool",
                "tool": "current_time",
                "arguments": {"timezone": "UTC"},
                "next": None,
            },
            {"id": "nap", "kind": "wait", "seconds": 0.2, "next": None},
            {"id": "review", "kind": "approval", "message": "Tell them about {{ input.title }}?"},
            {
                "id": "tell",
                "kind": "tool",
                "tool": "notify",
                "arguments": {"title": "{{ input.title }}", "message": "{{ steps.triage.output }}"},
            },
            {"id": "done", "kind": "tool", "tool": "current_time"},
        ],
        input_schema={
            "type": "object",
            "required": ["title"],
            "properties": {"title": {"type": "string"}},
        },
        output={
            "triage": "{{ steps.triage.output }}",
            "bug": "{{ steps['is-bug'].output.result }}",
        },
    )
    run = start(client, run_input={"title": "A crash"})
    assert run["status"] == "running" and run["version"] == 1
    review = wait_step(client, run["id"], "review", "waiting_approval")
    approval = client.get(f"/api/v1/approvals/{review['approval_id']}").json()
    assert approval["tool"] == "notify" and approval["workflow_step"] == "review"
    assert approval["arguments"] == {"title": "A crash", "message": "Echo: Triage A crash"}
    assert approval["workflow_run_id"] == run["id"] and approval["agent_id"] is None
    approve(client, approval["id"], comment="go")

    done = wait_run(client, run["id"])
    assert done["status"] == "completed", done
    assert done["output"] == {"triage": "Echo: Triage A crash", "bug": "True"}
    by_id = steps(done)
    assert set(by_id) == {
        "triage",
        "is-bug",
        "fan",
        "clock",
        "nap",
        "review",
        "tell",
        "done",
        "$output",
    }
    assert all(step["status"] == "completed" for step in by_id.values())
    assert by_id["is-bug"]["output"] == {"result": True, "next": "fan"}
    assert by_id["fan"]["output"][1]["waited_until"]
    assert by_id["review"]["output"]["decided_by"] and by_id["review"]["output"]["comment"] == "go"
    assert by_id["triage"]["input"] == {"prompt": "Triage A crash"}
    assert by_id["triage"]["tokens"]["completion_tokens"] > 0
    assert by_id["tell"]["input"]["arguments"]["title"] == "A crash"
    tasks = {s["task_id"] for s in by_id.values() if s["task_id"]}
    assert len(tasks) == 8  # every step but the parallel one is a task
    task = client.get(f"/api/v1/tasks/{by_id['tell']['task_id']}").json()
    assert task["kind"] == "tool" and task["workflow_run_id"] == run["id"]
    types = [
        e["type"]
        for e in client.get("/api/v1/events", params={"type": "workflow.*", "limit": 200}).json()[
            "items"
        ]
    ]
    assert "workflow.run.started" in types and "workflow.run.completed" in types
    assert "workflow.step.completed" in types and "workflow.step.waiting_approval" in types


def test_a_condition_that_does_not_hold_takes_its_else(client):
    define(
        client,
        [
            {"id": "check", "kind": "condition", "predicate": ".input.n > 3", "then": "big"},
            {"id": "small", "kind": "tool", "tool": "current_time", "next": None},
            {"id": "big", "kind": "tool", "tool": "current_time"},
        ],
    )
    done = wait_run(client, start(client, run_input={"n": 1})["id"])
    assert done["status"] == "completed"
    assert set(steps(done)) == {"check", "small"}


def test_join_any_goes_on_after_the_first_branch_and_stops_the_others(client):
    define(
        client,
        [
            {"id": "race", "kind": "parallel", "join": "any", "branches": ["fast", "slow"]},
            {"id": "fast", "kind": "tool", "tool": "current_time", "next": None},
            {"id": "slow", "kind": "wait", "seconds": 3600, "next": None},
            {"id": "after", "kind": "tool", "tool": "current_time"},
        ],
    )
    done = wait_run(client, start(client)["id"])
    assert done["status"] == "completed"
    by_id = steps(done)
    assert by_id["race"]["output"]["branch"] == 0
    assert by_id["slow"]["status"] == "cancelled"
    assert client.get(f"/api/v1/tasks/{by_id['slow']['task_id']}").json()["status"] == "cancelled"


def test_a_failed_step_is_retried_without_running_completed_steps_again(client, endpoint):
    tool = http_tool(client, endpoint)
    define(
        client,
        [
            {"id": "first", "kind": "tool", "tool": "notify", "arguments": {"title": "once"}},
            {
                "id": "publish",
                "kind": "tool",
                "tool": tool,
                "arguments": {"text": "{{ input.text }}"},
                "max_attempts": 2,
            },
            {"id": "last", "kind": "tool", "tool": "current_time"},
        ],
    )
    endpoint["fail"] = True
    run = start(client, run_input={"text": "hello"})
    failed = wait_run(client, run["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "step_failed" and failed["error"]["step_id"] == "publish"
    assert steps(failed)["publish"]["attempts"] == 2 and endpoint["calls"] == 2
    assert executions("notify") == 1 and executions(tool) == 2  # each attempt recorded once
    assert "last" not in steps(failed)

    assert_problem(client.post(f"{RUNS}/{run['id']}/retry"), 428)
    endpoint["fail"] = False
    retried = client.post(f"{RUNS}/{run['id']}/retry", headers=CONFIRM)
    assert retried.status_code == 200 and retried.json()["status"] == "running"
    done = wait_run(client, run["id"])
    assert done["status"] == "completed"
    assert executions("notify") == 1  # the completed step did not run again
    assert executions(tool) == 3
    assert steps(done)["publish"]["output"] == {"got": {"text": "hello"}}
    assert_problem(client.post(f"{RUNS}/{run['id']}/retry", headers=CONFIRM), 409)


def test_deny_fails_the_run_with_the_reason_and_approve_goes_on(client):
    define(
        client,
        [
            {"id": "ask", "kind": "approval", "message": "May I?"},
            {"id": "act", "kind": "tool", "tool": "notify", "arguments": {"title": "acted"}},
        ],
    )
    denied = start(client)
    ask = wait_step(client, denied["id"], "ask", "waiting_approval")
    approve(client, ask["approval_id"], approve=False, comment="not today")
    failed = wait_run(client, denied["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["cause"]["code"] == "approval_denied"
    assert "not today" in failed["error"]["detail"]
    assert "act" not in steps(failed)

    approved = start(client)
    ask = wait_step(client, approved["id"], "ask", "waiting_approval")
    approve(client, ask["approval_id"])
    assert wait_run(client, approved["id"])["status"] == "completed"


def test_an_expired_approval_counts_as_denied(client, clock):
    define(
        client,
        [
            {"id": "ask", "kind": "approval", "expires_in_seconds": 60},
            {"id": "act", "kind": "tool", "tool": "current_time"},
        ],
    )
    run = start(client)
    wait_step(client, run["id"], "ask", "waiting_approval")
    clock.advance(seconds=61)
    asyncio.run(sweep_approvals())  # what the workers' housekeeping does (every few seconds)
    failed = wait_run(client, run["id"], "failed")
    assert failed["error"]["cause"]["code"] == "approval_expired"


def test_a_run_stays_on_the_version_it_started_on(client):
    define(
        client,
        [
            {"id": "ask", "kind": "approval"},
            {"id": "act", "kind": "tool", "tool": "notify", "arguments": {"title": "v1"}},
        ],
    )
    run = start(client)
    ask = wait_step(client, run["id"], "ask", "waiting_approval")
    client.put(
        f"{WORKFLOWS}/flow",
        json={
            "steps": [
                {"id": "ask", "kind": "approval"},
                {"id": "act", "kind": "tool", "tool": "notify", "arguments": {"title": "v2"}},
                {"id": "more", "kind": "tool", "tool": "current_time"},
            ]
        },
    )
    approve(client, ask["approval_id"])
    done = wait_run(client, run["id"])
    assert done["version"] == 1
    assert steps(done)["act"]["input"]["arguments"] == {"title": "v1"}
    assert "more" not in steps(done)
    rerun = client.post(f"{RUNS}/{run['id']}/rerun")
    assert rerun.status_code == 201
    assert rerun.json()["version"] == 2 and rerun.json()["rerun_of"] == run["id"]


def test_cancel_stops_waiting_steps_and_the_run(client):
    define(
        client,
        [{"id": "ask", "kind": "approval"}, {"id": "act", "kind": "tool", "tool": "current_time"}],
    )
    run = start(client)
    ask = wait_step(client, run["id"], "ask", "waiting_approval")
    assert_problem(client.post(f"{RUNS}/{run['id']}/cancel"), 428)
    cancelled = client.post(f"{RUNS}/{run['id']}/cancel", headers=CONFIRM).json()
    assert cancelled["status"] == "cancelled"
    assert client.get(f"/api/v1/approvals/{ask['approval_id']}").json()["status"] == "expired"
    assert_problem(client.post(f"{RUNS}/{run['id']}/cancel", headers=CONFIRM), 409, "run_finished")
    listed = client.get(RUNS, params={"status": "cancelled", "workflow_id": "flow"}).json()
    assert [r["id"] for r in listed["items"]] == [run["id"]]
    assert (
        client.get(RUNS, params={"since": run["created_at"]}).json()["items"][0]["id"] == run["id"]
    )
    assert client.get(RUNS, params={"since": "2999-01-01T00:00:00Z"}).json()["items"] == []
    assert client.get(RUNS, params={"workflow_id": "other"}).json()["items"] == []
    assert_problem(client.get(RUNS, params={"since": "yesterday"}), 400)


def test_the_input_is_checked_against_the_schema_and_the_key_replays(client):
    define(
        client,
        [{"id": "now", "kind": "tool", "tool": "current_time"}],
        input_schema={
            "type": "object",
            "required": ["n"],
            "properties": {"n": {"type": "integer"}},
        },
    )
    bad = client.post(f"{WORKFLOWS}/flow/runs", json={"input": {"n": "x"}})
    assert error_fields(bad) == {"body.input.n"}
    missing = client.post(f"{WORKFLOWS}/flow/runs", json={"input": {}})
    assert assert_problem(missing, 422, "invalid_input")
    headers = {"Idempotency-Key": "run-once"}
    first = start(client, run_input={"n": 1}, headers=headers)
    again = start(client, run_input={"n": 1}, headers=headers)
    assert again["id"] == first["id"]
    assert len(client.get(RUNS).json()["items"]) == 1


BOMB = "{% for i in range(10**9) %}{% for j in range(10**9) %}x{% endfor %}{% endfor %}"


def test_a_template_bomb_fails_its_step_not_the_hub(client):
    define(
        client,
        [
            {
                "id": "bomb",
                "kind": "tool",
                "tool": "notify",
                "arguments": {"title": BOMB},
            }
        ],
    )
    failed = wait_run(client, start(client)["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["cause"]["code"] == "template_failed"
    assert client.get("/health/ready").status_code == 200


def test_an_approval_is_void_when_what_it_guards_changed_and_is_asked_again(client):
    """The approval showed the guarded step's arguments as they rendered then; a branch that
    ended meanwhile changed them: the old approval does not cover the new arguments."""
    title = "{{ steps.slow.output.waited_until if 'slow' in steps else 'not yet' }}"
    define(
        client,
        [
            {"id": "fan", "kind": "parallel", "branches": ["ask", "slow"]},
            {"id": "ask", "kind": "approval", "guards": "tell"},
            {
                "id": "tell",
                "kind": "tool",
                "tool": "notify",
                "arguments": {"title": title},
                "next": None,
            },
            {"id": "slow", "kind": "wait", "seconds": 0.2, "next": None},
        ],
    )
    run = start(client)
    first = wait_step(client, run["id"], "ask", "waiting_approval")
    assert client.get(f"/api/v1/approvals/{first['approval_id']}").json()["arguments"] == {
        "title": "not yet"
    }
    wait_step(client, run["id"], "slow", "completed")
    approve(client, first["approval_id"])

    again = wait_step(client, run["id"], "ask", "waiting_approval")
    assert again["approval_id"] != first["approval_id"]
    shown = client.get(f"/api/v1/approvals/{again['approval_id']}").json()["arguments"]
    assert shown["title"].endswith("Z")  # the time the wait ended: what will now run
    assert executions("notify") == 0  # nothing ran on the void approval
    approve(client, again["approval_id"])

    done = wait_run(client, run["id"])
    assert done["status"] == "completed", done
    assert steps(done)["tell"]["input"]["arguments"] == shown
    assert steps(done)["ask"]["output"]["asked"] == 2
    assert executions("notify") == 1


# --- started by everything that starts work ---------------------------------------------------


def test_a_signed_webhook_starts_a_workflow_through_a_trigger_then_approval_then_tool(client, anon):
    """GitHub `issues` delivery → `issue.created` (seeded mapping) → trigger with a
    `start_workflow` action → an approval step → the tool it guards, in the delivery's trace."""
    from tests.handlers.test_webhooks import ISSUE_OPENED, make_integration, post, signed

    make_integration(client, "github", "site")
    assert client.post("/api/v1/event-mappings/seed").status_code == 200
    define(
        client,
        [
            {"id": "ask", "kind": "approval", "message": "Announce #{{ input.number }}?"},
            {
                "id": "announce",
                "kind": "tool",
                "tool": "notify",
                "arguments": {
                    "title": "New issue #{{ input.number }}",
                    "message": "{{ input.title }}",
                },
            },
        ],
        id="announce-issues",
        input_schema={
            "type": "object",
            "required": ["number", "title"],
            "properties": {"number": {"type": "string"}, "title": {"type": "string"}},
        },
    )
    bad = client.post(
        "/api/v1/triggers",
        json={
            "name": "x",
            "event_type": "issue.created",
            "action": {"kind": "start_workflow", "workflow_id": "nope"},
        },
    )
    assert error_fields(bad) == {"body.action.workflow_id"}
    trigger = client.post(
        "/api/v1/triggers",
        json={
            "name": "Announce new issues",
            "event_type": "issue.created",
            "action": {
                "kind": "start_workflow",
                "workflow_id": "announce-issues",
                "input": {
                    "number": "{{ event.payload.issue.number }}",
                    "title": "{{ event.payload.issue.title }}",
                },
            },
        },
    )
    assert trigger.status_code == 201, trigger.text

    accepted = post(
        anon, "site", ISSUE_OPENED, signed("github", ISSUE_OPENED, event="issues", delivery="wf-1")
    )
    assert accepted.status_code == 202, accepted.text
    runs = wait_for(
        lambda: client.get(RUNS, params={"workflow_id": "announce-issues"}).json()["items"],
        lambda items: len(items) == 1,
    )
    run = runs[0]
    received = client.get(f"/api/v1/events/{accepted.json()['event_id']}").json()
    assert run["trace_id"] == received["trace_id"]
    assert run["input"] == {"number": "7", "title": "Crash on start — façade"}
    assert run["created_by"] == f"trigger:{trigger.json()['id']}"
    ask = wait_step(client, run["id"], "ask", "waiting_approval")
    approve(client, ask["approval_id"])
    done = wait_run(client, run["id"])
    assert done["status"] == "completed"
    note = steps(done)["announce"]["output"]["notification_id"]
    shown = client.get("/api/v1/notifications").json()["items"]
    assert any(n["id"] == note and n["title"] == "New issue #7" for n in shown)
    fired = client.get(f"/api/v1/triggers/{trigger.json()['id']}").json()
    assert fired["fired_count"] == 1 and fired["last_error"] is None
    trace = client.get(f"/api/v1/traces/{run['trace_id']}").json()
    assert [r["id"] for r in trace["workflow_runs"]] == [run["id"]]
    assert {t["workflow_step"] for t in trace["tasks"]} == {"ask", "announce"}
    types = {e["type"] for e in trace["events"]}
    assert {"webhook.received", "issue.created", "trigger.fired"} <= types
    assert {
        "workflow.run.started",
        "workflow.step.waiting_approval",
        "workflow.run.completed",
    } <= types


def test_a_schedule_starts_a_workflow_and_its_run_is_recorded(client):
    define(client, [{"id": "now", "kind": "tool", "tool": "current_time"}], id="tick")
    schedule = client.post(
        "/api/v1/schedules",
        json={
            "name": "every hour",
            "cron": "0 * * * *",
            "action": {
                "kind": "start_workflow",
                "workflow_id": "tick",
                "input": {"when": "{{ now }}", "who": "{{ schedule.name }}"},
            },
        },
    ).json()
    ran = client.post(f"/api/v1/schedules/{schedule['id']}/run").json()
    assert ran["status"] == "succeeded" and ran["task_id"] is None
    run = wait_run(client, ran["workflow_run_id"])
    assert run["status"] == "completed" and run["input"]["who"] == "every hour"
    mixed = client.post(
        "/api/v1/schedules",
        json={
            "name": "x",
            "cron": "0 * * * *",
            "action": {"kind": "start_workflow", "workflow_id": "tick", "description": "no"},
        },
    )
    assert (
        assert_problem(mixed, 422, "invalid_action")["errors"][0]["field"]
        == "body.action.description"
    )


def test_an_agent_starts_a_workflow_with_its_built_in_tool(client):
    define(
        client,
        [{"id": "now", "kind": "tool", "tool": "current_time"}],
        id="tick",
        input_schema={"type": "object", "required": ["zone"]},
    )
    agent = make_agent(client, model="builtin/scripted", tools=["start_workflow"])["id"]
    script = (
        '/tool start_workflow {"workflow_id": "tick", "input": {"zone": "UTC"}}\n/reply started'
    )
    task = client.post("/api/v1/tasks", json={"agent_id": agent, "description": script}).json()
    done = wait_for(
        lambda: client.get(f"/api/v1/tasks/{task['id']}").json(),
        lambda t: t["status"] in ("completed", "failed"),
    )
    assert done["status"] == "completed", done
    started = next(s for s in done["steps"] if s["kind"] == "tool")
    assert started["status"] == "ok", started
    run = wait_run(client, started["output"]["run_id"])
    assert run["status"] == "completed"
    assert run["created_by"] == f"task:{task['id']}" and run["trace_id"] == done["trace_id"]


def test_the_seeded_workflows_run_and_seeding_never_overwrites(client):
    assert client.post(f"{WORKFLOWS}/seed").json() == {
        "created": ["triage-and-announce", "recall-and-brief"],
        "skipped": [],
    }
    client.post(
        "/api/v1/memories",
        json={"key": "exporter", "content": "The exporter fails on empty rows.", "scope": "global"},
    )
    run = start(client, "triage-and-announce", {"title": "Exporter crash", "body": "Empty rows."})
    review = wait_step(client, run["id"], "review", "waiting_approval")
    approve(client, review["approval_id"])
    done = wait_run(client, run["id"])
    assert done["status"] == "completed", done
    assert done["output"]["triage"].startswith("Echo: Triage this issue")

    brief = wait_run(client, start(client, "recall-and-brief", {"topic": "exporter"})["id"])
    assert brief["status"] == "completed", brief
    assert set(steps(brief)) == {"recall", "brief", "when", "send", "$output"}  # no wait
    assert "empty rows" in steps(brief)["brief"]["input"]["prompt"]
    held = start(
        client, "recall-and-brief", {"topic": "exporter", "deliver_at": "2020-01-01T00:00:00Z"}
    )
    held = wait_run(client, held["id"])
    assert steps(held)["hold"]["output"] == {"waited_until": "2020-01-01T00:00:00.000Z"}

    client.put(
        f"{WORKFLOWS}/triage-and-announce",
        json={"steps": [{"id": "x", "kind": "wait", "seconds": 1}]},
    )
    assert client.post(f"{WORKFLOWS}/seed").json() == {
        "created": [],
        "skipped": ["triage-and-announce", "recall-and-brief"],
    }
    assert client.get(f"{WORKFLOWS}/triage-and-announce").json()["version"] == 2  # kept
