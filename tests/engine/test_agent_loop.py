"""The agent loop in tasks and in chat: tools, errors as results, step limits, approvals."""

from __future__ import annotations

import json

from tests.factories import make_agent, make_task, wait_for, wait_for_task

TASKS = "/api/v1/tasks"
APPROVALS = "/api/v1/approvals"


def scripted(client, **kw) -> dict:
    return make_agent(client, model="builtin/scripted", **kw)


def test_a_task_without_tools_completes_with_the_models_answer(client):
    agent = make_agent(client)
    task = make_task(client, agent_id=agent["id"], description="Hello")

    done = wait_for_task(client, task["id"])

    assert done["status"] == "completed", done
    assert done["result"] == "Echo: Hello"
    assert done["attempts"] == 1
    [step] = done["steps"]
    assert step["kind"] == "llm" and step["name"] == "builtin/echo" and step["status"] == "ok"


def test_a_task_runs_its_tools_and_feeds_the_results_back(client):
    agent = scripted(client, tools=["current_time"])
    script = '/tool current_time {"timezone": "Europe/Paris"}\n/reply done'
    task = make_task(client, agent_id=agent["id"], description=script)

    done = wait_for_task(client, task["id"])

    assert done["status"] == "completed", done
    assert done["result"] == "done"
    kinds = [(s["kind"], s["name"], s["status"]) for s in done["steps"]]
    assert kinds == [
        ("llm", "builtin/scripted", "ok"),
        ("tool", "current_time", "ok"),
        ("llm", "builtin/scripted", "ok"),
    ]
    tool_step = done["steps"][1]
    assert tool_step["output"]["timezone"] == "Europe/Paris"
    assert tool_step["tool_execution_id"].startswith("tex_")
    executions = client.get("/api/v1/tool-executions", params={"task_id": task["id"]}).json()
    [execution] = executions["items"]
    assert execution["tool"] == "current_time"
    assert execution["caller"] == f"task:{task['id']}"


def test_a_tool_error_goes_back_to_the_model(client):
    agent = scripted(client, tools=["current_time"])
    script = '/tool current_time {"timezone": "Mars/Olympus"}\n/tool nope {}\n/reply ok'
    done = wait_for_task(client, make_task(client, agent_id=agent["id"], description=script)["id"])

    assert done["status"] == "completed", done
    errors = [s["error"] for s in done["steps"] if s["kind"] == "tool"]
    assert errors == [
        "unknown time zone 'Mars/Olympus'",
        "no tool named 'nope' is available to this agent",
    ]


def test_the_step_limit_stops_the_loop(client):
    agent = scripted(client, tools=["current_time"], max_steps=2)
    script = "/tool current_time\n/reply a\n/tool current_time\n/reply b\n/tool current_time"
    done = wait_for_task(client, make_task(client, agent_id=agent["id"], description=script)["id"])

    assert done["status"] == "completed", done
    assert [s["kind"] for s in done["steps"]] == ["llm", "tool", "llm", "tool"]
    assert done["result"] == "a"  # the last thing the model said before the limit


def test_a_task_waits_for_approval_then_runs_the_tool(client):
    agent = scripted(client, tools=["http_request"])
    script = '/tool http_request {"url": "http://127.0.0.1:9/nothing"}\n/reply finished'
    task = make_task(client, agent_id=agent["id"], description=script)

    waiting = wait_for_task(client, task["id"], "waiting_approval")
    approval = client.get(f"{APPROVALS}/{waiting['approval_id']}").json()
    assert approval["status"] == "pending"
    assert approval["tool"] == "http_request"
    assert approval["arguments"] == {"url": "http://127.0.0.1:9/nothing"}
    assert approval["task_id"] == task["id"] and approval["agent_id"] == agent["id"]
    unread = client.get("/api/v1/notifications", params={"kind": "approval_requested"}).json()
    assert [n["subject"] for n in unread["items"]] == [approval["id"]]

    decided = client.post(f"{APPROVALS}/{approval['id']}/approve", json={"comment": "go"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"

    done = wait_for_task(client, task["id"])
    assert done["status"] == "completed", done
    assert done["result"] == "finished"
    assert done["attempts"] == 1
    tool_step = next(s for s in done["steps"] if s["kind"] == "tool")
    assert tool_step["approval_id"] == approval["id"]
    # The tool ran (and was refused by the outbound policy: loopback): an error result.
    assert tool_step["status"] == "error" and "loopback" in tool_step["error"]
    again = client.post(f"{APPROVALS}/{approval['id']}/deny")
    assert again.status_code == 409 and again.json()["code"] == "approval_decided"


def test_a_denied_call_reaches_the_model_as_a_denial(client):
    agent = scripted(client, tools=["http_request"])
    script = '/tool http_request {"url": "https://example.com/"}\n/reply fine'
    task = make_task(client, agent_id=agent["id"], description=script)
    waiting = wait_for_task(client, task["id"], "waiting_approval")

    client.post(f"{APPROVALS}/{waiting['approval_id']}/deny", json={"comment": "not today"})

    done = wait_for_task(client, task["id"])
    assert done["status"] == "completed"
    tool_step = next(s for s in done["steps"] if s["kind"] == "tool")
    assert tool_step["status"] == "denied"
    assert tool_step["error"] == "denied by an operator: not today"
    [execution] = client.get("/api/v1/tool-executions", params={"status": "denied"}).json()["items"]
    assert execution["approval_id"] == waiting["approval_id"]


def test_chat_streams_tool_calls_and_results(client):
    agent = scripted(client, tools=["current_time"])
    session = client.post("/api/v1/sessions", json={"agent_id": agent["id"]}).json()
    script = "/tool current_time\n/reply it is late"
    with client.stream(
        "POST",
        f"/api/v1/sessions/{session['id']}/messages",
        json={"content": script, "stream": True},
    ) as response:
        events = [
            json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")
        ]

    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "done"
    assert [t for t in types if t.startswith("tool")] == ["tool_call", "tool_result"]
    call = next(e for e in events if e["type"] == "tool_call")["call"]
    assert call["name"] == "current_time" and call["id"] == "call_1"
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["status"] == "ok" and "utc" in result["result"]
    done = events[-1]
    assert done["message"]["content"] == "it is late"
    assert [s["kind"] for s in done["turn"]["steps"]] == ["llm", "tool", "llm"]


def test_a_chat_turn_waits_for_approval_and_resumes(client, clock):
    agent = scripted(client, tools=["http_request"])
    session = client.post("/api/v1/sessions", json={"agent_id": agent["id"]}).json()
    script = '/tool http_request {"url": "https://example.com/"}\n/reply after'
    messages = f"/api/v1/sessions/{session['id']}/messages"

    reply = client.post(messages, json={"content": script}).json()

    turn = reply["turn"]
    assert turn["status"] == "waiting_approval" and turn["finish_reason"] == "approval_required"
    assert reply["message"]["status"] == "waiting_approval"
    busy = client.post(messages, json={"content": "hello?"})
    assert busy.status_code == 409 and busy.json()["code"] == "approval_pending"
    assert (turn["completed_at"], turn["duration_ms"]) == (None, None)  # not finished

    clock.advance(minutes=2)
    client.post(f"{APPROVALS}/{turn['approval_id']}/deny")

    done = wait_for(
        lambda: client.get(f"/api/v1/turns/{turn['id']}").json(),
        lambda t: t["status"] == "completed",
    )
    assert done["approval_id"] is None
    assert done["duration_ms"] == 120_000  # the wait for a person counts
    assert [s["status"] for s in done["steps"]] == ["ok", "denied", "ok"]
    history = client.get(messages).json()["items"]
    assert history[-1]["content"] == "after" and history[-1]["status"] == "complete"
