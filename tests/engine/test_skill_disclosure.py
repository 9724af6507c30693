"""Progressive disclosure of skills into agents: a folder of real Agent Skills
(``tests/data/skills``) read by reload; an agent on ``builtin/scripted`` is offered its enabled
skills by name and description only, reads one with ``load_skill`` and a reference file with
``read_skill_file``; the turn and the task steps record the versions offered and loaded;
``allowed-tools`` narrows what the agent may call and never widens it; a disabled skill is not
offered; the two tools' names are reserved."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from tests.assertions import Matches, assert_problem
from tests.factories import make_agent, make_task, wait_for, wait_for_task

DATA = Path(__file__).resolve().parent.parent / "data" / "skills"
SKILLS = "/api/v1/skills"
SHA256 = Matches("[0-9a-f]{64}")


@pytest.fixture
def settings(settings, tmp_path):
    shutil.copytree(DATA, tmp_path / "skills")
    return settings.replace(skills_dir=str(tmp_path / "skills"))


@pytest.fixture
def skills(client):
    report = client.post(f"{SKILLS}/reload")
    assert report.status_code == 200, report.text
    assert report.json()["created"] == ["incident-report", "issue-triage", "release-notes"]
    assert report.json()["invalid"] == []
    return {s["name"]: s for s in client.get(SKILLS).json()["items"]}


def tool_call(tool: str, **arguments) -> str:
    return f"/tool {tool} {json.dumps(arguments)}"


def script(*lines: str) -> str:
    return "\n".join(lines)


def chat(client, agent: dict, content: str) -> dict:
    session = client.post("/api/v1/sessions", json={"agent_id": agent["id"]}).json()
    response = client.post(f"/api/v1/sessions/{session['id']}/messages", json={"content": content})
    assert response.status_code == 200, response.text
    return response.json()["turn"]


def ref(skill: dict) -> dict:
    return {"name": skill["name"], "version": skill["version"], "sha256": skill["sha256"]}


def template_bytes() -> bytes:
    return (DATA / "incident-report" / "references" / "template.md").read_bytes()


def run_task(client, agent: dict, description: str) -> dict:
    return wait_for_task(
        client, make_task(client, agent_id=agent["id"], description=description)["id"]
    )


def tool_steps(record: dict) -> list[dict]:
    return [s for s in record["steps"] if s["kind"] == "tool"]


def test_a_turn_offers_names_and_descriptions_then_loads_a_skill_and_a_file(client, skills):
    agent = make_agent(
        client,
        model="builtin/scripted",
        skills=["incident-report", "release-notes", "no-such-skill"],
    )
    turn = chat(
        client,
        agent,
        script(
            tool_call("load_skill", name="incident-report"),
            tool_call("read_skill_file", name="incident-report", path="references/template.md"),
            "/reply Report drafted.",
        ),
    )

    assert turn["status"] == "completed", turn
    offered = [ref(skills["incident-report"]), ref(skills["release-notes"])]
    assert turn["skills"] == {"offered": offered, "loaded": [ref(skills["incident-report"])]}
    system = [m["content"] for m in turn["context"] if m["role"] == "system"]
    [listing] = [text for text in system if "<available_skills>" in text]
    assert "<name>incident-report</name>" in listing and "<name>release-notes</name>" in listing
    assert skills["incident-report"]["description"] in listing
    assert "issue-triage" not in listing and "no-such-skill" not in listing
    assert "Name causes, not people" not in listing  # the body is read on demand only
    first_llm = turn["steps"][0]
    assert first_llm["input"]["tools"] == ["load_skill", "read_skill_file"]
    assert first_llm["input"]["skills"] == [
        {"name": "incident-report", "version": 1},
        {"name": "release-notes", "version": 1},
    ]
    load, read = tool_steps(turn)
    assert (load["name"], load["status"]) == ("load_skill", "ok")
    body = (DATA / "incident-report" / "SKILL.md").read_text().split("---\n", 2)[2]
    assert load["output"] == {
        "name": "incident-report",
        "version": 1,
        "sha256": skills["incident-report"]["sha256"],
        "instructions": body,
        "files": [{"path": "references/template.md", "size": len(template_bytes())}],
    }
    template = (DATA / "incident-report" / "references" / "template.md").read_text()
    assert read["status"] == "ok", read
    assert read["output"] == {
        "name": "incident-report",
        "version": 1,
        "path": "references/template.md",
        "size": len(template.encode()),
        "sha256": SHA256,
        "truncated": False,
        "encoding": "utf-8",
        "content": template,
    }
    executions = client.get("/api/v1/tool-executions", params={"turn_id": turn["id"]}).json()
    assert sorted(e["tool"] for e in executions["items"]) == ["load_skill", "read_skill_file"]


def test_task_steps_record_the_skills_offered_and_loaded(client, skills):
    agent = make_agent(client, model="builtin/scripted", skills=["issue-triage"])
    description = script(
        tool_call("load_skill", name="issue-triage"),
        tool_call("read_skill_file", name="issue-triage", path="assets/labels.json"),
        tool_call("read_skill_file", name="issue-triage", path="scripts/label.sh"),
        tool_call("read_skill_file", name="issue-triage", path="references/none.md"),
        "/reply bug, P2",
    )
    done = run_task(client, agent, description)

    assert done["status"] == "completed", done
    assert done["result"] == "bug, P2"
    llm = [s for s in done["steps"] if s["kind"] == "llm"]
    assert [s["input"]["skills"] for s in llm] == [[{"name": "issue-triage", "version": 1}]] * 2
    load, labels, script_file, missing = tool_steps(done)
    assert (load["output"]["name"], load["output"]["version"]) == ("issue-triage", 1)
    assert load["output"]["sha256"] == skills["issue-triage"]["sha256"]
    assert [f["path"] for f in load["output"]["files"]] == [
        "assets/labels.json",
        "scripts/label.sh",
    ]
    assert json.loads(labels["output"]["content"]) == ["bug", "feature", "question", "docs"]
    # a script is handed over as text to read (the hub has nothing that runs one)
    assert script_file["output"]["content"].startswith("#!/bin/sh")
    assert missing["status"] == "error"
    assert missing["error"] == "skill 'issue-triage' version 1 has no file 'references/none.md'"


def test_the_version_offered_is_the_version_loaded_and_recorded(client, skills):
    skill_md = (
        (DATA / "release-notes" / "SKILL.md")
        .read_text()
        .replace("Group the changes", "Sort the changes")
    )
    put = client.put(f"{SKILLS}/release-notes", json={"skill_md": skill_md, "files": {}})
    assert put.status_code == 200, put.text
    agent = make_agent(client, model="builtin/scripted", skills=["release-notes"])

    turn = chat(client, agent, script(tool_call("load_skill", name="release-notes"), "/reply ok"))

    [load] = tool_steps(turn)
    assert load["output"]["version"] == 2
    assert "Sort the changes" in load["output"]["instructions"]
    assert turn["skills"]["loaded"] == [
        {**ref(put.json()), "allowed_tools": ["current_time", "Bash(git log:*)"]}
    ]


def test_allowed_tools_narrow_what_the_agent_may_call_once_the_skill_is_loaded(client, skills):
    agent = make_agent(
        client,
        model="builtin/scripted",
        tools=["current_time", "memory_search"],
        skills=["release-notes", "incident-report"],
    )
    description = script(
        tool_call("memory_search", query="last release"),
        tool_call("load_skill", name="release-notes"),
        tool_call("memory_search", query="last release"),
        tool_call("current_time"),
        tool_call("load_skill", name="incident-report"),
        tool_call("memory_search", query="last release"),
        "/reply ok",
    )
    done = run_task(client, agent, description)

    assert done["status"] == "completed", done
    statuses = [(s["name"], s["status"]) for s in tool_steps(done)]
    assert statuses == [
        ("memory_search", "ok"),  # before any skill is loaded: the agent's own tools
        ("load_skill", "ok"),
        ("memory_search", "error"),  # release-notes allows current_time only
        ("current_time", "ok"),
        ("load_skill", "ok"),  # incident-report declares nothing: it widens nothing
        ("memory_search", "error"),
    ]
    refused = tool_steps(done)[2]
    assert refused["error"] == (
        "'memory_search' is outside the allowed-tools of the loaded skills (release-notes)"
    )
    offered = [s["input"]["tools"] for s in done["steps"] if s["kind"] == "llm"]
    assert offered[0] == ["current_time", "memory_search", "load_skill", "read_skill_file"]
    assert offered[1] == ["current_time", "load_skill", "read_skill_file"]
    assert offered[-1] == ["current_time", "load_skill", "read_skill_file"]


def test_allowed_tools_never_add_a_tool_the_agent_lacks(client, skills):
    agent = make_agent(client, model="builtin/scripted", skills=["release-notes"])
    description = script(
        tool_call("load_skill", name="release-notes"), tool_call("current_time"), "/reply ok"
    )
    done = run_task(client, agent, description)

    _, current_time = tool_steps(done)
    assert current_time["status"] == "error"
    assert current_time["error"] == "no tool named 'current_time' is available to this agent"


def test_a_disabled_skill_is_not_offered_and_cannot_be_loaded(client, skills):
    client.post(f"{SKILLS}/incident-report/disable")
    agent = make_agent(client, model="builtin/scripted", skills=["incident-report", "issue-triage"])

    turn = chat(
        client,
        agent,
        script(tool_call("load_skill", name="incident-report"), "/reply ok"),
    )

    assert turn["skills"] == {"offered": [ref(skills["issue-triage"])], "loaded": []}
    [load] = tool_steps(turn)
    assert load["status"] == "error" and "incident-report" in load["error"]


def test_an_agent_without_enabled_skills_gets_no_skill_tools_or_listing(client, skills):
    client.post(f"{SKILLS}/issue-triage/disable")
    agent = make_agent(client, model="builtin/scripted", skills=["issue-triage"])

    turn = chat(client, agent, script(tool_call("load_skill", name="issue-triage"), "/reply ok"))

    assert turn["skills"] == {"offered": [], "loaded": []}
    assert all("<available_skills>" not in m["content"] for m in turn["context"])
    assert "skills" not in turn["steps"][0]["input"]
    assert turn["steps"][0]["input"]["tools"] == []
    [load] = tool_steps(turn)
    assert load["error"] == "no tool named 'load_skill' is available to this agent"


def test_a_binary_file_comes_back_as_base64(client):
    logo = bytes(range(256))
    body = {
        "skill_md": "---\nname: brand\ndescription: Our brand assets.\n---\nUse the logo.\n",
        "files": {"assets/logo.bin": base64.b64encode(logo).decode()},
    }
    assert client.post(SKILLS, json=body).status_code == 201
    agent = make_agent(client, model="builtin/scripted", skills=["brand"])

    turn = chat(
        client,
        agent,
        script(tool_call("read_skill_file", name="brand", path="assets/logo.bin"), "/reply ok"),
    )

    [read] = tool_steps(turn)
    assert read["output"]["encoding"] == "base64"
    assert base64.b64decode(read["output"]["content"]) == logo


def test_loaded_skills_survive_a_wait_for_approval(client, skills):
    agent = make_agent(
        client, model="builtin/scripted", tools=["http_request"], skills=["incident-report"]
    )
    turn = chat(
        client,
        agent,
        script(
            tool_call("load_skill", name="incident-report"),
            tool_call("http_request", url="https://example.com/"),
            "/reply after",
        ),
    )
    assert turn["status"] == "waiting_approval", turn

    client.post(f"/api/v1/approvals/{turn['approval_id']}/deny")

    done = wait_for(
        lambda: client.get(f"/api/v1/turns/{turn['id']}").json(),
        lambda t: t["status"] == "completed",
    )
    assert done["skills"]["loaded"] == [ref(skills["incident-report"])]
    assert [s["status"] for s in tool_steps(done)] == ["ok", "denied"]


def test_an_agents_chat_completion_can_load_its_skills(client, skills):
    agent = make_agent(client, model="builtin/scripted", skills=["incident-report"])
    content = script(tool_call("load_skill", name="incident-report"), "/reply loaded")

    response = client.post(
        "/v1/chat/completions",
        json={"model": agent["id"], "messages": [{"role": "user", "content": content}]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "loaded"
    executions = client.get("/api/v1/tool-executions", params={"tool": "load_skill"}).json()
    [execution] = executions["items"]
    assert execution["result"]["name"] == "incident-report"


def test_the_skill_tools_names_are_reserved(client):
    for name in ("load_skill", "read_skill_file"):
        body = {"name": name, "description": "Mine.", "endpoint": "https://example.com/hook"}
        assert_problem(client.post("/api/v1/tools", json=body), 409, "tool_exists")


def test_a_plugins_skill_is_offered_while_the_plugin_is_enabled(client):
    skill_md = "---\nname: acme-voice\ndescription: Write in Acme's voice.\n---\nBe brief.\n"
    plugin = {"name": "acme", "version": "1.0.0", "description": "Acme.", "skills": [
        {"skill_md": skill_md}]}  # fmt: skip
    assert client.post("/api/v1/plugins", json=plugin).status_code == 201
    agent = make_agent(client, model="builtin/scripted", skills=["acme-voice"])
    load = script(tool_call("load_skill", name="acme-voice"), "/reply ok")

    enabled = chat(client, agent, load)
    client.post("/api/v1/plugins/acme/disable", headers={"X-Confirm": "yes"})
    disabled = chat(client, agent, load)

    assert [s["name"] for s in enabled["skills"]["loaded"]] == ["acme-voice"]
    assert tool_steps(enabled)[0]["output"]["instructions"] == "Be brief.\n"
    assert disabled["skills"] == {"offered": [], "loaded": []}
    assert tool_steps(disabled)[0]["status"] == "error"
