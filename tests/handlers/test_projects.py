"""Projects: create, list (newest first, by source), get, replace with If-Match, delete
(refused while an integration uses the project)."""

from __future__ import annotations

import re

import pytest

from db.events import Event
from tests.assertions import assert_problem, error_fields

URL = "/api/v1/projects"
NOW = "2026-01-01T12:00:00.000Z"
LATER = "2026-01-01T12:01:00.000Z"
ID = re.compile(r"^prj_[0-9a-z]{26}$")


def make_project(client, **overrides) -> dict:
    body = {"name": "Website", "source": "github", "source_project_id": "acme/website"}
    body.update(overrides)
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_answers_the_whole_project_with_location_and_etag(client, clock):
    response = client.post(
        URL,
        json={
            "name": "Website",
            "description": "The public site.",
            "source": "github",
            "source_project_id": "acme/website",
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert ID.match(body["id"])
    assert body == {
        "id": body["id"],
        "name": "Website",
        "description": "The public site.",
        "source": "github",
        "source_project_id": "acme/website",
        "created_at": NOW,
        "updated_at": NOW,
    }
    assert response.headers["location"] == f"{URL}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    got = client.get(f"{URL}/{body['id']}")
    assert got.json() == body and got.headers["etag"] == '"1"'


def test_create_fills_the_optional_fields(client, clock):
    body = make_project(client, name="Ops", source="generic", source_project_id=None)

    assert body == {
        "id": body["id"],
        "name": "Ops",
        "description": "",
        "source": "generic",
        "source_project_id": None,
        "created_at": NOW,
        "updated_at": NOW,
    }


def test_create_records_a_project_created_event(client):
    project = make_project(client)

    event = Event.select().where(Event.type == "project.created").get()
    assert (event.source, event.subject) == ("hub", project["id"])
    assert event.payload == {
        "project_id": project["id"],
        "name": "Website",
        "source": "github",
        "source_project_id": "acme/website",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "github"}, "body.name"),
        ({"name": "X"}, "body.source"),
        ({"name": "X", "source": "svn"}, "body.source"),
        ({"name": "X", "source": "github", "source_project_id": ""}, "body.source_project_id"),
        ({"name": "X", "source": "github", "colour": "red"}, "body.colour"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(client, body, field):
    response = client.post(URL, json=body)

    assert_problem(response, 400, "validation_error")
    assert field in error_fields(response)
    assert client.get(URL).json() == {"items": [], "next_cursor": None}


def test_list_is_newest_first_and_filters_by_source(client):
    first = make_project(client, name="A")
    second = make_project(client, name="B", source="gitlab", source_project_id="42")
    third = make_project(client, name="C")

    assert client.get(URL).json() == {"items": [third, second, first], "next_cursor": None}
    assert client.get(URL, params={"source": "github"}).json()["items"] == [third, first]
    assert client.get(URL, params={"source": "jira"}).json()["items"] == []
    assert_problem(client.get(URL, params={"source": "svn"}), 400)


def test_list_pages_through_every_project_once(client):
    made = [make_project(client, name=f"P{n}")["id"] for n in range(5)]

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(URL, params=params).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(made))


def test_get_unknown_is_404_and_a_malformed_id_is_400(client):
    assert_problem(client.get(f"{URL}/prj_nope"), 404, "project_not_found")
    response = client.get(f"{URL}/not-an-id!")
    assert_problem(response, 400)
    assert error_fields(response) == {"path.project_id"}


def test_put_replaces_the_project_and_moves_the_etag(client, clock):
    project = make_project(client, description="Old.")
    clock.advance(minutes=1)

    response = client.put(
        f"{URL}/{project['id']}",
        json={"name": "Website 2", "source": "gitlab"},
        headers={"If-Match": '"1"'},
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json() == {
        "id": project["id"],
        "name": "Website 2",
        "description": "",
        "source": "gitlab",
        "source_project_id": None,
        "created_at": NOW,
        "updated_at": LATER,
    }
    assert client.get(f"{URL}/{project['id']}").json() == response.json()
    assert Event.select().where(Event.type == "project.updated").count() == 1


def test_put_with_a_stale_etag_is_412_and_changes_nothing(client):
    project = make_project(client)

    response = client.put(
        f"{URL}/{project['id']}",
        json={"name": "Other", "source": "github"},
        headers={"If-Match": '"7"'},
    )

    assert_problem(response, 412, "etag_mismatch")
    assert client.get(f"{URL}/{project['id']}").json() == project


def test_put_of_the_same_body_changes_nothing(client, clock):
    project = make_project(client)
    clock.advance(minutes=1)
    body = {k: project[k] for k in ("name", "source", "source_project_id")}

    response = client.put(f"{URL}/{project['id']}", json={**body, "description": ""})

    assert response.status_code == 200 and response.headers["etag"] == '"1"'
    assert response.json() == project


def test_put_unknown_is_404(client):
    response = client.put(f"{URL}/prj_nope", json={"name": "X", "source": "github"})
    assert_problem(response, 404, "project_not_found")


def test_delete_removes_the_project(client):
    project = make_project(client)

    assert client.delete(f"{URL}/{project['id']}").status_code == 204

    assert_problem(client.get(f"{URL}/{project['id']}"), 404, "project_not_found")
    assert_problem(client.delete(f"{URL}/{project['id']}"), 404, "project_not_found")
    event = Event.select().where(Event.type == "project.deleted").get()
    assert event.payload == {"project_id": project["id"]}


def test_delete_of_a_project_with_integrations_is_409(client):
    project = make_project(client)
    integration = client.post(
        "/api/v1/integrations",
        json={"kind": "github", "slug": "site", "project_id": project["id"]},
    ).json()

    assert_problem(client.delete(f"{URL}/{project['id']}"), 409, "project_in_use")
    assert client.get(f"{URL}/{project['id']}").json() == project

    assert client.delete(f"/api/v1/integrations/{integration['id']}").status_code == 204
    assert client.delete(f"{URL}/{project['id']}").status_code == 204


def test_viewers_read_and_operators_write(app, keyring):
    from starlette.testclient import TestClient

    from tests.conftest import auth

    with TestClient(app, headers=auth(keyring["viewer"])) as viewer:
        assert viewer.get(URL).status_code == 200
        assert_problem(viewer.post(URL, json={"name": "X", "source": "github"}), 403)
    with TestClient(app, headers=auth(keyring["operator"])) as operator:
        assert operator.post(URL, json={"name": "X", "source": "github"}).status_code == 201
