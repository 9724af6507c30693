"""The client openapi-python-client generates from the spec a live hub serves: it generates
without a warning, and its typed API drives the hub through agents, a conversation, tasks,
memory, approvals, events and problems.

The generated package exists only once the fixtures have run, so each test imports what it
uses from it in its body, as a user of the client would at the top of a module.
"""

from __future__ import annotations

import json
import os

import pytest

from hub.core.spec import SPEC_PATH as SPEC
from tests.clients import harness
from tests.servers import TOKEN

pytestmark = pytest.mark.slow  # a generator and a hub process: make test, not make test-fast

TOOL = "openapi-python-client"
PACKAGE = "aether_hub_client"


def generate(hub: str, folder) -> dict:
    executable = harness.tool(TOOL, "openapi-python-client")
    # The venv's bin on PATH: the generator formats its output with that venv's ruff (and
    # warns that it skips formatting when there is none).
    env = {**os.environ, "PATH": f"{executable.parent}{os.pathsep}{os.environ['PATH']}"}
    return harness.run(
        [
            str(executable),
            "generate",
            "--url",
            hub + harness.SPEC_PATH,
            "--config",
            str(harness.CONFIG / "openapi-python-client.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
        ],
        env=env,
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with harness.live_hub(tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def generation(hub, tmp_path_factory) -> dict:
    return harness.generate_once(tmp_path_factory, TOOL, lambda folder: generate(hub, folder))


@pytest.fixture(scope="module")
def client(generation, hub):
    package = harness.import_generated(generation, PACKAGE)
    return package.AuthenticatedClient(base_url=hub, token=TOKEN, raise_on_unexpected_status=True)


def make_agent(client, agent_id: str, **fields):
    from aether_hub_client.api.agents import create_agent
    from aether_hub_client.models import Agent, AgentCreate

    fields.setdefault("model", "builtin/scripted")
    body = AgentCreate(id=agent_id, name=agent_id.title(), **fields)
    created = create_agent.sync_detailed(client=client, body=body)
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, Agent)
    return created


def test_the_client_generates_without_warnings(generation):
    assert generation["returncode"] == 0, generation["output"]
    assert harness.warnings_in(generation["output"]) == [], generation["output"]


def test_agents_are_created_and_paged(client):
    from aether_hub_client.api.agents import list_agents
    from aether_hub_client.types import UNSET

    ids = ["paged-a", "paged-b", "paged-c"]
    for agent_id in ids:
        created = make_agent(client, agent_id, capabilities=["paging"])
        assert created.parsed.id == agent_id
        assert created.headers["location"] == f"/api/v1/agents/{agent_id}"

    pages, cursor = [], UNSET
    while True:
        page = list_agents.sync(client=client, capability="paging", limit=2, cursor=cursor)
        pages.append([agent.id for agent in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [["paged-a", "paged-b"], ["paged-c"]]


def test_an_agent_is_patched_with_if_match_and_a_stale_etag_is_412(client):
    from aether_hub_client.api.agents import get_agent, update_agent
    from aether_hub_client.models import AgentUpdate, Problem

    make_agent(client, "patched")
    read = get_agent.sync_detailed("patched", client=client)
    etag = read.headers["etag"]
    assert read.parsed.config_version == 1

    patched = update_agent.sync_detailed(
        "patched", client=client, body=AgentUpdate(temperature=0.2), if_match=etag
    )
    assert patched.status_code == 200, patched.content
    assert patched.parsed.temperature == 0.2
    assert patched.parsed.config_version == 2
    assert patched.headers["etag"] != etag

    stale = update_agent.sync_detailed(
        "patched", client=client, body=AgentUpdate(temperature=0.5), if_match=etag
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, Problem)
    assert (stale.parsed.status, stale.parsed.code) == (412, "etag_mismatch")
    assert get_agent.sync("patched", client=client).temperature == 0.2


def test_a_session_message_is_answered_and_its_turn_listed(client):
    from aether_hub_client.api.sessions import (
        create_session,
        list_messages,
        list_session_turns,
        send_message,
    )
    from aether_hub_client.models import MessageCreate, SessionCreate

    make_agent(client, "talker", model="builtin/echo")
    session = create_session.sync(client=client, body=SessionCreate(agent_id="talker"))
    reply = send_message.sync(session.id, client=client, body=MessageCreate(content="Hello there"))

    assert reply.message.content == "Echo: Hello there"
    assert reply.turn.session_id == session.id
    assert reply.turn.assistant_message_id == reply.message.id
    turns = list_session_turns.sync(session.id, client=client)
    assert [turn.id for turn in turns.items] == [reply.turn.id]
    assert turns.items[0].model == "echo"
    history = list_messages.sync(session.id, client=client)
    assert [(m.role, m.content) for m in history.items] == [
        ("user", "Hello there"),
        ("assistant", "Echo: Hello there"),
    ]


def test_a_task_is_polled_to_completion(client):
    from aether_hub_client.api.tasks import create_task, get_task
    from aether_hub_client.models import TaskCreate, TaskStatus

    make_agent(client, "worker")
    task = create_task.sync(
        client=client, body=TaskCreate(agent_id="worker", description="/reply all done")
    )
    assert task.status == TaskStatus.PENDING

    final = harness.poll(
        lambda: get_task.sync(task.id, client=client),
        lambda t: t.status not in (TaskStatus.PENDING, TaskStatus.RUNNING),
        "the task to finish",
    )
    assert final.status == TaskStatus.COMPLETED
    assert final.result == "all done"
    assert final.attempts == 1
    assert [step.kind.value for step in final.steps] == ["llm"]


def test_a_memory_is_stored_and_found(client):
    from aether_hub_client.api.memory import create_memory, search_memories
    from aether_hub_client.models import MemoryCreate, MemoryScope, MemorySearch

    stored = create_memory.sync_detailed(
        client=client,
        body=MemoryCreate(
            key="ada.coffee",
            content="Ada takes her coffee black.",
            scope=MemoryScope.GLOBAL,
            tags=["people"],
        ),
    )
    assert stored.status_code == 201, stored.content
    assert stored.parsed.key == "ada.coffee"
    assert stored.headers["etag"] == '"1"'

    found = search_memories.sync(client=client, body=MemorySearch(query="coffee"))
    assert found.mode == "keyword"
    assert [hit.key for hit in found.items] == ["ada.coffee"]
    assert found.items[0].snippet == "Ada takes her <mark>coffee</mark> black."
    assert found.items[0].tags == ["people"]


def test_an_approval_is_decided_and_the_task_goes_on(client):
    from aether_hub_client.api.approvals import approve, get_approval
    from aether_hub_client.api.tasks import create_task, get_task
    from aether_hub_client.models import ApprovalDecision, ApprovalStatus, TaskCreate, TaskStatus

    make_agent(client, "asker", tools=["http_request"])
    # http_request needs an approval; once approved it runs, and refuses the loopback address
    # (no network needed): the model gets that error as the tool's result and replies.
    script = '/tool http_request {"url": "http://127.0.0.1:9/"}\n/reply decided'
    task = create_task.sync(client=client, body=TaskCreate(agent_id="asker", description=script))
    waiting = harness.poll(
        lambda: get_task.sync(task.id, client=client),
        lambda t: t.status == TaskStatus.WAITING_APPROVAL,
        "the task to wait for an approval",
    )

    asked = get_approval.sync(waiting.approval_id, client=client)
    assert (asked.status, asked.tool, asked.task_id) == (
        ApprovalStatus.PENDING,
        "http_request",
        task.id,
    )
    assert asked.arguments.to_dict() == {"url": "http://127.0.0.1:9/"}

    decided = approve.sync(asked.id, client=client, body=ApprovalDecision(comment="go ahead"))
    assert (decided.status, decided.comment, decided.decided_by) == (
        ApprovalStatus.APPROVED,
        "go ahead",
        "admin-token",
    )
    final = harness.poll(
        lambda: get_task.sync(task.id, client=client),
        lambda t: t.status == TaskStatus.COMPLETED,
        "the task to complete",
    )
    assert final.result == "decided"
    assert [(step.kind.value, step.approval_id) for step in final.steps] == [
        ("llm", None),
        ("tool", asked.id),
        ("llm", None),
    ]


def test_an_event_is_pushed_and_read_back(client):
    from aether_hub_client.api.events import get_event, list_events, push_event
    from aether_hub_client.models import EventCreate, EventCreatePayload

    payload = EventCreatePayload.from_dict({"sha": "f00", "ok": True})
    pushed = push_event.sync(
        client=client,
        body=EventCreate(type_="deploy.finished", source="ci", subject="site", payload=payload),
    )
    assert pushed.type_ == "deploy.finished"
    assert pushed.actor == "admin-token"

    read = get_event.sync(pushed.id, client=client)
    assert (read.id, read.type_, read.source, read.subject) == (
        pushed.id,
        "deploy.finished",
        "ci",
        "site",
    )
    assert read.payload.to_dict() == {"sha": "f00", "ok": True}
    listed = list_events.sync(client=client, type_="deploy.*")
    assert [event.id for event in listed.items] == [pushed.id]


def test_the_contract_is_read_as_yaml(client):
    from aether_hub_client.api.system import get_openapi_yaml

    document = get_openapi_yaml.sync(client=client)
    assert document.payload.read() == SPEC.read_bytes()  # the file, byte for byte


def assert_problem(answer, status: int, code: str, title: str) -> None:
    """The answer parsed as the contract's ``Problem``, its members those the hub sent."""
    from aether_hub_client.models import Problem

    assert answer.status_code == status, answer.content
    problem = answer.parsed
    assert isinstance(problem, Problem), answer.content
    assert (problem.status, problem.code, problem.title) == (status, code, title)
    assert problem.type_ == "https://aether-hub.dev/problems/" + code.replace("_", "-")
    assert problem.request_id == answer.headers["x-request-id"]
    assert problem.detail == json.loads(answer.content)["detail"]


def test_an_unknown_agent_is_a_404_problem(client):
    from aether_hub_client.api.agents import get_agent

    answer = get_agent.sync_detailed("nobody", client=client)
    assert_problem(answer, 404, "agent_not_found", "Not Found")


def test_a_taken_agent_id_is_a_409_problem(client):
    from aether_hub_client.api.agents import create_agent
    from aether_hub_client.models import AgentCreate

    make_agent(client, "taken")
    body = AgentCreate(id="taken", name="Again", model="builtin/echo")
    answer = create_agent.sync_detailed(client=client, body=body)
    assert_problem(answer, 409, "agent_exists", "Conflict")


def test_a_session_with_an_unknown_agent_is_a_422_problem(client):
    from aether_hub_client.api.sessions import create_session
    from aether_hub_client.models import SessionCreate

    answer = create_session.sync_detailed(client=client, body=SessionCreate(agent_id="nobody"))
    assert_problem(answer, 422, "agent_not_found", "Unprocessable Entity")
