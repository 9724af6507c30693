"""Tool groups: the seeded ones, create / list / get / replace with If-Match / delete (refused
while an agent lists the group), validation of the tools a group holds, and ``group:<name>``
in an agent's ``tools`` standing for the group's tools in the agent loop."""

from __future__ import annotations

from db.events import Event
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent, make_task, wait_for_task

URL = "/api/v1/tool-groups"
SEEDED = {
    "coordination": ["create_task", "notify"],
    "memory": ["memory_search", "memory_store"],
    "time": ["current_time"],
    "web": ["http_request"],
}


def make_group(client, **overrides) -> dict:
    body = {"name": "triage", "description": "For triage.", "tools": ["notify", "current_time"]}
    body.update(overrides)
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_new_hub_has_the_seeded_groups(client):
    listed = client.get(URL).json()

    assert {g["name"]: g["tools"] for g in listed["items"]} == SEEDED
    assert {g["source"] for g in listed["items"]} == {"seed"}
    assert listed["next_cursor"] is None


def test_create_answers_the_group_with_location_and_etag(client):
    response = client.post(URL, json={"name": "triage", "tools": ["notify", "current_time"]})

    assert response.status_code == 201, response.text
    group = response.json()
    assert group["name"] == "triage"
    assert group["tools"] == ["notify", "current_time"]  # in the order given
    assert (group["description"], group["source"], group["version"]) == ("", "api", 1)
    assert response.headers["Location"] == "/api/v1/tool-groups/triage"
    assert response.headers["ETag"] == '"1"'
    assert client.get(f"{URL}/triage").json() == group
    assert [e.type for e in Event.select().where(Event.subject == "triage")] == [
        "tool_group.created"
    ]


def test_groups_are_listed_by_name_and_paged(client):
    make_group(client, name="aaa")
    first = client.get(URL, params={"limit": 2}).json()
    second = client.get(URL, params={"limit": 2, "cursor": first["next_cursor"]}).json()

    names = [g["name"] for g in first["items"] + second["items"]]
    assert names[:4] == ["aaa", "coordination", "memory", "time"]


def test_a_taken_name_is_a_409(client):
    make_group(client)

    assert_problem(client.post(URL, json={"name": "triage", "tools": ["notify"]}), 409,
                   "tool_group_exists")  # fmt: skip


def test_every_tool_must_exist_and_groups_do_not_nest(client):
    response = client.post(
        URL, json={"name": "bad", "tools": ["notify", "nope", "current_time", "gone"]}
    )

    assert_problem(response, 422, "unknown_tool")
    assert error_fields(response) == {"body.tools[1]", "body.tools[3]"}
    assert client.get(f"{URL}/bad").status_code == 404
    nested = client.post(URL, json={"name": "bad", "tools": ["group:memory"]})
    assert_problem(nested, 400, "validation_error")


def test_registered_http_tools_may_be_grouped(client):
    tool = {
        "name": "lookup",
        "description": "Look a customer up.",
        "endpoint": "https://crm.example.com/lookup",
    }
    assert client.post("/api/v1/tools", json=tool).status_code == 201

    assert make_group(client, tools=["lookup"])["tools"] == ["lookup"]


def test_the_body_is_validated_by_the_contract(client):
    for body in ({"name": "x", "tools": []}, {"name": "x", "tools": ["a", "a"]},
                 {"name": "Bad Name", "tools": ["notify"]}, {"tools": ["notify"]}):  # fmt: skip
        assert client.post(URL, json=body).status_code == 400, body


def test_replace_with_if_match(client):
    make_group(client)

    stale = client.put(f"{URL}/triage", json={"tools": ["notify"]}, headers={"If-Match": '"7"'})
    assert_problem(stale, 412, "etag_mismatch")
    response = client.put(
        f"{URL}/triage",
        json={"description": "Smaller.", "tools": ["notify"]},
        headers={"If-Match": '"1"'},
    )

    assert response.status_code == 200, response.text
    assert response.json()["tools"] == ["notify"]
    assert response.json()["description"] == "Smaller."
    assert response.headers["ETag"] == '"2"'
    same = client.put(f"{URL}/triage", json={"description": "Smaller.", "tools": ["notify"]})
    assert same.headers["ETag"] == '"2"'  # nothing changed
    bad = client.put(f"{URL}/triage", json={"tools": ["nope"]})
    assert_problem(bad, 422, "unknown_tool")
    assert_problem(client.put(f"{URL}/ghost", json={"tools": ["notify"]}), 404,
                   "tool_group_not_found")  # fmt: skip


def test_delete_is_refused_while_an_agent_lists_the_group(client):
    make_group(client)
    agent = make_agent(client, tools=["group:triage", "memory_search"])

    refused = client.delete(f"{URL}/triage")
    assert_problem(refused, 409, "tool_group_in_use")
    assert agent["id"] in refused.json()["detail"]

    patched = client.patch(f"/api/v1/agents/{agent['id']}", json={"tools": ["memory_search"]})
    assert patched.status_code == 200, patched.text
    assert client.delete(f"{URL}/triage").status_code == 204
    assert_problem(client.get(f"{URL}/triage"), 404, "tool_group_not_found")
    assert_problem(client.delete(f"{URL}/triage"), 404, "tool_group_not_found")


def test_seeded_groups_are_ordinary_groups(client):
    assert client.delete(f"{URL}/web").status_code == 204
    assert "web" not in [g["name"] for g in client.get(URL).json()["items"]]


def test_an_agent_calls_the_tools_of_a_group_it_lists(client):
    agent = make_agent(client, model="builtin/scripted", tools=["group:time"])
    task = make_task(client, agent_id=agent["id"], description="/tool current_time\n/reply ok")

    done = wait_for_task(client, task["id"])

    assert done["status"] == "completed", done
    llm_step = next(s for s in done["steps"] if s["kind"] == "llm")
    assert llm_step["input"]["tools"] == ["current_time"]  # the group, expanded
    (tool_step,) = [s for s in done["steps"] if s["kind"] == "tool"]
    assert (tool_step["name"], tool_step["status"]) == ("current_time", "ok")


def test_an_edited_group_applies_to_the_agents_next_task(client):
    make_group(client, name="kit", tools=["current_time"])
    agent = make_agent(client, model="builtin/scripted", tools=["group:kit"])
    client.put(f"{URL}/kit", json={"tools": ["notify"]})
    task = make_task(client, agent_id=agent["id"], description="/tool current_time\n/reply ok")

    done = wait_for_task(client, task["id"])

    llm_step = next(s for s in done["steps"] if s["kind"] == "llm")
    assert llm_step["input"]["tools"] == ["notify"]
    (tool_step,) = [s for s in done["steps"] if s["kind"] == "tool"]
    assert tool_step["status"] == "error"  # current_time is no longer the agent's
