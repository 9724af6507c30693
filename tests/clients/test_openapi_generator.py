"""The client openapi-generator (generator ``python``) makes from the spec a live hub serves: it
generates without a warning, and its typed API drives the hub through agents, a conversation,
tasks, memory, approvals, events and problems.

The generated package exists only once the fixtures have run, so each test imports what it
uses from it in its body, as a user of the client would at the top of a module.
"""

from __future__ import annotations

import json
import shutil

import pytest

from hub.core.spec import SPEC_PATH as SPEC
from tests.clients import harness
from tests.servers import TOKEN

pytestmark = pytest.mark.toolchain  # Java: make test-clients runs it, make test does not

TOOL = "openapi-generator"
PACKAGE = "aether_hub_openapi_generator"


def generate(hub: str, folder) -> dict:
    harness.tool(TOOL, "openapi-generator-cli")  # installed?
    java = shutil.which("java")
    if java is None:
        pytest.fail("openapi-generator needs Java 17 or later: no `java` on PATH")
    (jar,) = (harness.TOOLS / TOOL).glob("lib/python*/site-packages/openapi_generator_cli/*.jar")
    # The jar the pinned package ships, run as its wrapper runs it, with one more JVM option
    # (the wrapper passes only one): the logging configuration, which explains itself.
    return harness.run(
        [
            java,
            "-XX:ActiveProcessorCount=1",
            f"-Dlogback.configurationFile={harness.CONFIG / 'openapi-generator-logback.xml'}",
            "-jar",
            str(jar),
            "generate",
            "--generator-name",
            "python",
            "--input-spec",
            hub + harness.SPEC_PATH,
            "--output",
            str(folder),
            "--package-name",
            PACKAGE,
            "--global-property",
            "apiTests=false,modelTests=false,apiDocs=false,modelDocs=false",
        ]
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
    with package.ApiClient(package.Configuration(host=hub, access_token=TOKEN)) as api_client:
        yield api_client


def make_agent(client, agent_id: str, **fields):
    from aether_hub_openapi_generator import AgentCreate, AgentsApi

    fields.setdefault("model", "builtin/scripted")
    body = AgentCreate(id=agent_id, name=agent_id.title(), **fields)
    created = AgentsApi(client).create_agent_with_http_info(body)
    assert created.status_code == 201, created.raw_data
    return created


def test_the_client_generates_without_warnings(generation):
    assert generation["returncode"] == 0, generation["output"]
    assert harness.warnings_in(generation["output"]) == [], generation["output"]


def test_agents_are_created_and_paged(client):
    from aether_hub_openapi_generator import AgentsApi

    ids = ["paged-a", "paged-b", "paged-c"]
    for agent_id in ids:
        created = make_agent(client, agent_id, capabilities=["paging"])
        assert created.data.id == agent_id
        assert created.headers["location"] == f"/api/v1/agents/{agent_id}"

    agents = AgentsApi(client)
    pages, cursor = [], None
    while True:
        page = agents.list_agents(capability="paging", limit=2, cursor=cursor)
        pages.append([agent.id for agent in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [["paged-a", "paged-b"], ["paged-c"]]


def test_an_agent_is_patched_with_if_match_and_a_stale_etag_is_412(client):
    from aether_hub_openapi_generator import AgentsApi, AgentUpdate, ApiException, Problem

    agents = AgentsApi(client)
    make_agent(client, "patched")
    read = agents.get_agent_with_http_info("patched")
    etag = read.headers["etag"]
    assert read.data.config_version == 1

    patched = agents.update_agent_with_http_info(
        "patched", AgentUpdate(temperature=0.2), if_match=etag
    )
    assert patched.status_code == 200
    assert patched.data.temperature == 0.2
    assert patched.data.config_version == 2
    assert patched.headers["etag"] != etag

    with pytest.raises(ApiException) as stale:
        agents.update_agent("patched", AgentUpdate(temperature=0.5), if_match=etag)
    assert stale.value.status == 412
    assert isinstance(stale.value.data, Problem)
    assert (stale.value.data.status, stale.value.data.code) == (412, "etag_mismatch")
    assert agents.get_agent("patched").temperature == 0.2


def test_a_session_message_is_answered_and_its_turn_listed(client):
    from aether_hub_openapi_generator import MessageCreate, SessionCreate, SessionsApi

    sessions = SessionsApi(client)
    make_agent(client, "talker", model="builtin/echo")
    session = sessions.create_session(SessionCreate(agent_id="talker"))
    reply = sessions.send_message(session.id, MessageCreate(content="Hello there"))

    assert reply.message.content == "Echo: Hello there"
    assert reply.turn.session_id == session.id
    assert reply.turn.assistant_message_id == reply.message.id
    turns = sessions.list_session_turns(session.id)
    assert [turn.id for turn in turns.items] == [reply.turn.id]
    assert turns.items[0].model == "echo"
    history = sessions.list_messages(session.id)
    assert [(m.role, m.content) for m in history.items] == [
        ("user", "Hello there"),
        ("assistant", "Echo: Hello there"),
    ]


def test_a_task_is_polled_to_completion(client):
    from aether_hub_openapi_generator import TaskCreate, TasksApi, TaskStatus

    tasks = TasksApi(client)
    make_agent(client, "worker")
    task = tasks.create_task(TaskCreate(agent_id="worker", description="/reply all done"))
    assert task.status == TaskStatus.PENDING

    final = harness.poll(
        lambda: tasks.get_task(task.id),
        lambda t: t.status not in (TaskStatus.PENDING, TaskStatus.RUNNING),
        "the task to finish",
    )
    assert final.status == TaskStatus.COMPLETED
    assert final.result == "all done"
    assert final.attempts == 1
    assert [step.kind for step in final.steps] == ["llm"]


def test_a_memory_is_stored_and_found(client):
    from aether_hub_openapi_generator import MemoryApi, MemoryCreate, MemoryScope, MemorySearch

    memory = MemoryApi(client)
    stored = memory.create_memory_with_http_info(
        MemoryCreate(
            key="ada.coffee",
            content="Ada takes her coffee black.",
            scope=MemoryScope.GLOBAL,
            tags=["people"],
        )
    )
    assert stored.status_code == 201
    assert stored.data.key == "ada.coffee"
    assert stored.headers["etag"] == '"1"'

    found = memory.search_memories(MemorySearch(query="coffee"))
    assert found.mode == "keyword"
    assert [hit.key for hit in found.items] == ["ada.coffee"]
    assert found.items[0].snippet == "Ada takes her <mark>coffee</mark> black."
    assert found.items[0].tags == ["people"]


def test_an_approval_is_decided_and_the_task_goes_on(client):
    from aether_hub_openapi_generator import (
        ApprovalDecision,
        ApprovalsApi,
        ApprovalStatus,
        TaskCreate,
        TasksApi,
        TaskStatus,
    )

    tasks, approvals = TasksApi(client), ApprovalsApi(client)
    make_agent(client, "asker", tools=["http_request"])
    # http_request needs an approval; once approved it runs, and refuses the loopback address
    # (no network needed): the model gets that error as the tool's result and replies.
    script = '/tool http_request {"url": "http://127.0.0.1:9/"}\n/reply decided'
    task = tasks.create_task(TaskCreate(agent_id="asker", description=script))
    waiting = harness.poll(
        lambda: tasks.get_task(task.id),
        lambda t: t.status == TaskStatus.WAITING_APPROVAL,
        "the task to wait for an approval",
    )

    asked = approvals.get_approval(waiting.approval_id)
    assert (asked.status, asked.tool, asked.task_id) == (
        ApprovalStatus.PENDING,
        "http_request",
        task.id,
    )
    assert asked.arguments == {"url": "http://127.0.0.1:9/"}

    decided = approvals.approve(asked.id, ApprovalDecision(comment="go ahead"))
    assert (decided.status, decided.comment, decided.decided_by) == (
        ApprovalStatus.APPROVED,
        "go ahead",
        "admin-token",
    )
    final = harness.poll(
        lambda: tasks.get_task(task.id),
        lambda t: t.status == TaskStatus.COMPLETED,
        "the task to complete",
    )
    assert final.result == "decided"
    assert [(step.kind, step.approval_id) for step in final.steps] == [
        ("llm", None),
        ("tool", asked.id),
        ("llm", None),
    ]


def test_an_event_is_pushed_and_read_back(client):
    from aether_hub_openapi_generator import EventCreate, EventsApi

    events = EventsApi(client)
    pushed = events.push_event(
        EventCreate(
            type="deploy.finished", source="ci", subject="site", payload={"sha": "f00", "ok": True}
        )
    )
    assert pushed.type == "deploy.finished"
    assert pushed.actor == "admin-token"

    read = events.get_event(pushed.id)
    assert (read.id, read.type, read.source, read.subject) == (
        pushed.id,
        "deploy.finished",
        "ci",
        "site",
    )
    assert read.payload == {"sha": "f00", "ok": True}
    listed = events.list_events(type="deploy.*")
    assert [event.id for event in listed.items] == [pushed.id]


def test_the_contract_is_read_as_yaml(client):
    from aether_hub_openapi_generator import SystemApi

    document = SystemApi(client).get_openapi_yaml()
    assert document == SPEC.read_bytes()  # the file, byte for byte


def assert_problem(raised, status: int, code: str, title: str) -> None:
    """The error the client raised, its body parsed as the contract's ``Problem``."""
    from aether_hub_openapi_generator import Problem

    error = raised.value
    assert error.status == status, error.body
    problem = error.data
    assert isinstance(problem, Problem), error.body
    assert (problem.status, problem.code, problem.title) == (status, code, title)
    assert problem.type == "https://aether-hub.dev/problems/" + code.replace("_", "-")
    assert problem.request_id == error.headers["x-request-id"]
    assert problem.detail == json.loads(error.body)["detail"]


def test_an_unknown_agent_is_a_404_problem(client):
    from aether_hub_openapi_generator import AgentsApi
    from aether_hub_openapi_generator.exceptions import NotFoundException

    with pytest.raises(NotFoundException) as raised:
        AgentsApi(client).get_agent("nobody")
    assert_problem(raised, 404, "agent_not_found", "Not Found")


def test_a_taken_agent_id_is_a_409_problem(client):
    from aether_hub_openapi_generator import AgentCreate, AgentsApi
    from aether_hub_openapi_generator.exceptions import ConflictException

    make_agent(client, "taken")
    with pytest.raises(ConflictException) as raised:
        AgentsApi(client).create_agent(AgentCreate(id="taken", name="Again", model="builtin/echo"))
    assert_problem(raised, 409, "agent_exists", "Conflict")


def test_a_session_with_an_unknown_agent_is_a_422_problem(client):
    from aether_hub_openapi_generator import SessionCreate, SessionsApi
    from aether_hub_openapi_generator.exceptions import UnprocessableEntityException

    with pytest.raises(UnprocessableEntityException) as raised:
        SessionsApi(client).create_session(SessionCreate(agent_id="nobody"))
    assert_problem(raised, 422, "agent_not_found", "Unprocessable Entity")
