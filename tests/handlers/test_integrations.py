"""Integrations: CRUD with write-only secrets encrypted at rest, unique slugs, an existing
project, ETag/If-Match."""

from __future__ import annotations

import json
import re

import pytest

from db.base import database
from db.events import Event
from hub.core import crypto
from tests.assertions import assert_problem, error_fields
from tests.handlers.test_projects import make_project

URL = "/api/v1/integrations"
NOW = "2026-01-01T12:00:00.000Z"
LATER = "2026-01-01T12:01:00.000Z"
ID = re.compile(r"^itg_[0-9a-z]{26}$")
SECRET = "whsec-correct-horse"
TOKEN = "ghp_verysecrettoken"


def make_integration(client, **overrides) -> dict:
    body = {"kind": "github", "slug": "site", "name": "Site repo", "webhook_secret": SECRET}
    body.update(overrides)
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def stored(integration_id: str) -> dict:
    """The integration's row as the database has it (raw columns, no model in between)."""
    cursor = database.execute_sql(
        "SELECT credentials_encrypted, credential_names, webhook_secret_encrypted "
        "FROM integration WHERE id = %s".replace("%s", database.param),
        (integration_id,),
    )
    credentials, names, secret = cursor.fetchone()
    return {"credentials": credentials, "names": names, "secret": secret}


def decrypt(token: str) -> str:
    return crypto.box().decrypt(token)


def test_create_answers_the_whole_integration_without_its_secrets(client, clock):
    project = make_project(client)

    response = client.post(
        URL,
        json={
            "kind": "github",
            "slug": "site",
            "name": "Site repo",
            "project_id": project["id"],
            "credentials": {"token": TOKEN, "app_id": "1234"},
            "webhook_secret": SECRET,
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert ID.match(body["id"])
    assert body == {
        "id": body["id"],
        "kind": "github",
        "slug": "site",
        "name": "Site repo",
        "project_id": project["id"],
        "active": True,
        "has_credentials": True,
        "credential_names": ["app_id", "token"],
        "has_webhook_secret": True,
        "webhook_path": "/api/v1/webhooks/site",
        "created_at": NOW,
        "updated_at": NOW,
    }
    assert response.headers["location"] == f"{URL}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert TOKEN not in response.text and SECRET not in response.text
    got = client.get(f"{URL}/{body['id']}")
    assert got.json() == body and got.headers["etag"] == '"1"'
    listed = client.get(URL)
    assert listed.json() == {"items": [body], "next_cursor": None}
    assert TOKEN not in listed.text and SECRET not in listed.text


def test_secrets_are_encrypted_in_the_database(client):
    integration = make_integration(client, credentials={"token": TOKEN})

    row = stored(integration["id"])

    assert TOKEN not in row["credentials"] and SECRET not in row["secret"]
    assert row["credentials"].startswith("gAAAA") and row["secret"].startswith("gAAAA")
    assert json.loads(decrypt(row["credentials"])) == {"token": TOKEN}
    assert decrypt(row["secret"]) == SECRET
    assert json.loads(row["names"]) == ["token"]
    event = Event.select().where(Event.type == "integration.created").get()
    assert TOKEN not in json.dumps(event.payload) and SECRET not in json.dumps(event.payload)
    assert event.payload == {
        "integration_id": integration["id"],
        "kind": "github",
        "slug": "site",
        "project_id": None,
        "active": True,
    }


def test_create_fills_the_optional_fields(client, clock):
    response = client.post(URL, json={"kind": "generic", "slug": "ci"})

    assert response.status_code == 201, response.text
    body = response.json()

    assert body == {
        "id": body["id"],
        "kind": "generic",
        "slug": "ci",
        "name": "",
        "project_id": None,
        "active": True,
        "has_credentials": False,
        "credential_names": [],
        "has_webhook_secret": False,
        "webhook_path": "/api/v1/webhooks/ci",
        "created_at": NOW,
        "updated_at": NOW,
    }
    assert stored(body["id"]) == {"credentials": None, "names": "[]", "secret": None}


def test_a_taken_slug_is_409(client):
    make_integration(client)

    response = client.post(URL, json={"kind": "gitlab", "slug": "site"})

    assert_problem(response, 409, "integration_exists")
    assert len(client.get(URL).json()["items"]) == 1


def test_an_unknown_project_is_422_naming_body_project_id(client):
    response = client.post(URL, json={"kind": "github", "slug": "x", "project_id": "prj_nope"})

    assert_problem(response, 422, "project_not_found")
    assert error_fields(response) == {"body.project_id"}
    assert client.get(URL).json()["items"] == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "svn"}, "body.kind"),
        ({"slug": "Not A Slug"}, "body.slug"),
        ({"webhook_secret": "short"}, "body.webhook_secret"),
        ({"credentials": {"token": 5}}, "body.credentials.token"),
        ({"credentials": "token"}, "body.credentials"),
        ({"secret": "x" * 10}, "body.secret"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(client, overrides, field):
    response = client.post(URL, json={"kind": "github", "slug": "x", **overrides})

    assert_problem(response, 400, "validation_error")
    assert field in error_fields(response)


def test_list_is_newest_first_and_filters_by_project(client):
    project = make_project(client)
    first = make_integration(client, slug="a", project_id=project["id"])
    second = make_integration(client, slug="b")
    third = make_integration(client, slug="c", project_id=project["id"])

    assert [i["id"] for i in client.get(URL).json()["items"]] == [
        third["id"],
        second["id"],
        first["id"],
    ]
    filtered = client.get(URL, params={"project_id": project["id"]}).json()
    assert filtered == {"items": [third, first], "next_cursor": None}
    page = client.get(URL, params={"limit": 2}).json()
    assert [i["id"] for i in page["items"]] == [third["id"], second["id"]]
    rest = client.get(URL, params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert rest == {"items": [first], "next_cursor": None}


def test_get_unknown_is_404(client):
    assert_problem(client.get(f"{URL}/itg_nope"), 404, "integration_not_found")


def test_put_keeps_omitted_secrets_and_replaces_the_rest(client, clock):
    project = make_project(client)
    made = make_integration(client, credentials={"token": TOKEN})
    before = stored(made["id"])
    clock.advance(minutes=1)

    response = client.put(
        f"{URL}/{made['id']}",
        json={"kind": "github", "slug": "site-2", "project_id": project["id"], "active": False},
        headers={"If-Match": '"1"'},
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json() == {
        **made,
        "slug": "site-2",
        "name": "",
        "project_id": project["id"],
        "active": False,
        "webhook_path": "/api/v1/webhooks/site-2",
        "updated_at": LATER,
    }
    assert stored(made["id"]) == before
    assert client.get(f"{URL}/{made['id']}").json() == response.json()


def test_put_with_null_clears_a_secret_and_a_value_replaces_it(client):
    made = make_integration(client, credentials={"token": TOKEN})

    cleared = client.put(
        f"{URL}/{made['id']}",
        json={"kind": "github", "slug": "site", "credentials": None, "webhook_secret": None},
    ).json()
    replaced = client.put(
        f"{URL}/{made['id']}",
        json={"kind": "github", "slug": "site", "credentials": {"pat": "glpat-1"}},
    ).json()

    assert (cleared["has_credentials"], cleared["credential_names"]) == (False, [])
    assert cleared["has_webhook_secret"] is False
    assert (replaced["has_credentials"], replaced["credential_names"]) == (True, ["pat"])
    assert replaced["has_webhook_secret"] is False
    row = stored(made["id"])
    assert row["secret"] is None and json.loads(decrypt(row["credentials"])) == {"pat": "glpat-1"}


def test_put_with_a_stale_etag_is_412_and_changes_nothing(client):
    made = make_integration(client)

    response = client.put(
        f"{URL}/{made['id']}", json={"kind": "gitlab", "slug": "x"}, headers={"If-Match": '"3"'}
    )

    assert_problem(response, 412, "etag_mismatch")
    assert client.get(f"{URL}/{made['id']}").json() == made


def test_put_to_a_taken_slug_is_409_and_to_an_unknown_project_422(client):
    make_integration(client, slug="taken")
    made = make_integration(client, slug="mine")

    taken = client.put(f"{URL}/{made['id']}", json={"kind": "github", "slug": "taken"})
    unknown = client.put(
        f"{URL}/{made['id']}", json={"kind": "github", "slug": "mine", "project_id": "prj_x"}
    )

    assert_problem(taken, 409, "integration_exists")
    assert_problem(unknown, 422, "project_not_found")
    assert error_fields(unknown) == {"body.project_id"}
    assert client.get(f"{URL}/{made['id']}").json() == made


def test_put_unknown_is_404(client):
    response = client.put(f"{URL}/itg_nope", json={"kind": "github", "slug": "x"})
    assert_problem(response, 404, "integration_not_found")


def test_delete_removes_the_integration_and_frees_its_slug(client):
    made = make_integration(client)

    assert client.delete(f"{URL}/{made['id']}").status_code == 204

    assert_problem(client.get(f"{URL}/{made['id']}"), 404, "integration_not_found")
    assert_problem(client.delete(f"{URL}/{made['id']}"), 404, "integration_not_found")
    assert make_integration(client)["slug"] == "site"


def test_integrations_need_an_admin_to_write(app, keyring):
    from starlette.testclient import TestClient

    from tests.conftest import auth

    with TestClient(app, headers=auth(keyring["operator"])) as operator:
        assert operator.get(URL).status_code == 200
        assert_problem(operator.post(URL, json={"kind": "github", "slug": "x"}), 403)
