"""Event mappings: create (jq checked, exact duplicates refused), list, delete, and the
idempotent seed of the GitHub and GitLab defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hub.services import event_mappings
from tests.assertions import assert_problem, error_fields

URL = "/api/v1/event-mappings"
NOW = "2026-01-01T12:00:00.000Z"
ID = re.compile(r"^map_[0-9a-z]{26}$")

ISSUE_CHANGES = (
    '["edited", "labeled", "unlabeled", "assigned", "unassigned", "milestoned", "demilestoned", '
    '"reopened"]'
)
PR_CHANGES = (
    '["synchronize", "edited", "reopened", "ready_for_review", "converted_to_draft", "labeled", '
    '"unlabeled", "assigned", "unassigned", "review_requested"]'
)
SEEDED = [
    "github issues opened → issue.created",
    f"github issues if .action as $a | {ISSUE_CHANGES} | index([$a]) != null → issue.updated",
    "github issues closed → issue.closed",
    "github issue_comment created → issue.commented",
    "github pull_request opened → pr.opened",
    f"github pull_request if .action as $a | {PR_CHANGES} | index([$a]) != null → pr.updated",
    "github pull_request closed if .pull_request.merged == true → pr.merged",
    "github pull_request closed if .pull_request.merged != true → pr.closed",
    "github pull_request_review submitted → pr.reviewed",
    'github deployment_status if .deployment_status.state == "success" → deployment.completed',
    "github push → code.pushed",
    "gitlab Issue Hook open → issue.created",
    "gitlab Issue Hook update → issue.updated",
    "gitlab Issue Hook reopen → issue.updated",
    "gitlab Issue Hook close → issue.closed",
    'gitlab Note Hook if .object_attributes.noteable_type == "Issue" → issue.commented',
    "gitlab Merge Request Hook open → pr.opened",
    "gitlab Merge Request Hook update → pr.updated",
    "gitlab Merge Request Hook reopen → pr.updated",
    "gitlab Merge Request Hook close → pr.closed",
    "gitlab Merge Request Hook merge → pr.merged",
    "gitlab Merge Request Hook approved → pr.reviewed",
    'gitlab Deployment Hook if .status == "success" → deployment.completed',
    "gitlab Push Hook → code.pushed",
]


def make_mapping(client, **overrides) -> dict:
    body = {"source": "generic", "event": "build", "action": "finished", "type": "build.done"}
    body.update(overrides)
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_answers_the_whole_mapping(client, clock):
    response = client.post(
        URL,
        json={
            "source": "github",
            "event": "release",
            "action": "published",
            "filter": ".release.prerelease == false",
            "type": "release.published",
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert ID.match(body["id"])
    assert body == {
        "id": body["id"],
        "source": "github",
        "event": "release",
        "action": "published",
        "filter": ".release.prerelease == false",
        "type": "release.published",
        "error_count": 0,
        "last_error": None,
        "created_at": NOW,
    }
    assert response.headers["location"] == f"{URL}/{body['id']}"
    assert client.get(URL).json() == {"items": [body], "next_cursor": None}


def test_a_filter_that_does_not_compile_is_422_naming_body_filter(client):
    response = client.post(
        URL, json={"source": "github", "event": "push", "filter": ".a ==", "type": "x.y"}
    )

    assert_problem(response, 422, "invalid_filter")
    assert error_fields(response) == {"body.filter"}
    assert client.get(URL).json()["items"] == []


def test_an_exact_duplicate_is_409_but_a_variant_is_not(client):
    make_mapping(client)
    make_mapping(client, action=None)
    make_mapping(client, filter=".ok")

    assert_problem(client.post(URL, json={**_body(), "action": "finished"}), 409, "mapping_exists")
    assert_problem(client.post(URL, json={**_body(), "action": None}), 409, "mapping_exists")
    assert len(client.get(URL).json()["items"]) == 3


def _body() -> dict:
    return {"source": "generic", "event": "build", "type": "build.done"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"source": "jira"}, "body.source"),
        ({"event": ""}, "body.event"),
        ({"type": "NotDotted"}, "body.type"),
        ({"action": "a/b"}, "body.action"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(client, overrides, field):
    response = client.post(URL, json={**_body(), **overrides})

    assert_problem(response, 400, "validation_error")
    assert field in error_fields(response)


def test_seed_installs_the_defaults_once(client, clock):
    first = client.post(f"{URL}/seed")
    second = client.post(f"{URL}/seed")

    assert first.status_code == 200, first.text
    assert first.json() == {"created": SEEDED, "skipped": []}
    assert second.json() == {"created": [], "skipped": SEEDED}
    items = client.get(URL, params={"limit": 100}).json()["items"]
    assert [event_mappings.describe(m) for m in items] == SEEDED
    merged = next(m for m in items if m["type"] == "pr.merged" and m["source"] == "github")
    assert merged == {
        "id": merged["id"],
        "source": "github",
        "event": "pull_request",
        "action": "closed",
        "filter": ".pull_request.merged == true",
        "type": "pr.merged",
        "error_count": 0,
        "last_error": None,
        "created_at": NOW,
    }


def test_seed_skips_a_default_that_exists_already(client):
    existing = make_mapping(client, source="github", event="push", action=None, type="code.pushed")

    result = client.post(f"{URL}/seed").json()

    assert result["skipped"] == ["github push → code.pushed"]
    assert result["created"] == [d for d in SEEDED if d != "github push → code.pushed"]
    assert client.get(URL, params={"limit": 100}).json()["items"][0] == existing


def test_list_filters_by_source_and_pages_in_creation_order(client):
    client.post(f"{URL}/seed")

    gitlab = client.get(URL, params={"source": "gitlab", "limit": 100}).json()
    first = client.get(URL, params={"limit": 15}).json()
    rest = client.get(URL, params={"limit": 15, "cursor": first["next_cursor"]}).json()

    assert [event_mappings.describe(m) for m in gitlab["items"]] == SEEDED[11:]
    assert gitlab["next_cursor"] is None
    assert [event_mappings.describe(m) for m in first["items"] + rest["items"]] == SEEDED
    assert rest["next_cursor"] is None


def test_delete_removes_the_mapping(client):
    mapping = make_mapping(client)

    assert client.delete(f"{URL}/{mapping['id']}").status_code == 204

    assert client.get(URL).json()["items"] == []
    assert_problem(client.delete(f"{URL}/{mapping['id']}"), 404, "mapping_not_found")


def test_viewers_cannot_seed(app, keyring):
    from starlette.testclient import TestClient

    from tests.conftest import auth

    with TestClient(app, headers=auth(keyring["viewer"])) as viewer:
        assert viewer.get(URL).status_code == 200
        assert_problem(viewer.post(f"{URL}/seed"), 403)


# --- the canonical table, on the payloads the sources publish ------------------------------

DATA = Path(__file__).resolve().parent.parent / "data" / "webhooks"


def _published(name: str, **changes) -> bytes:
    """A published payload (tests/data/webhooks/SOURCES.md), with the one field a test must
    change where no sample of that action is published (dotted paths)."""
    raw = (DATA / name).read_bytes()
    if not changes:
        return raw  # the exact bytes, as the source sends them
    payload = json.loads(raw)
    for path, value in changes.items():
        node = payload
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return json.dumps(payload).encode()


CANONICAL = [
    ("github", "issues", "github/issues.opened.json", {}, "issue.created"),
    ("github", "issues", "github/issues.edited.json", {}, "issue.updated"),
    ("github", "issues", "github/issues.edited.json", {"action": "closed"}, "issue.closed"),
    ("github", "issue_comment", "github/issue_comment.created.json", {}, "issue.commented"),
    ("github", "pull_request", "github/pull_request.opened.json", {}, "pr.opened"),
    ("github", "pull_request", "github/pull_request.synchronize.json", {}, "pr.updated"),
    ("github", "pull_request", "github/pull_request.closed.unmerged.json", {}, "pr.closed"),
    (
        "github",
        "pull_request",
        "github/pull_request.closed.unmerged.json",
        {"pull_request__merged": True},
        "pr.merged",
    ),
    (
        "github",
        "pull_request_review",
        "github/pull_request_review.submitted.json",
        {},
        "pr.reviewed",
    ),
    (
        "github",
        "deployment_status",
        "github/deployment_status.success.json",
        {},
        "deployment.completed",
    ),
    ("gitlab", "Issue Hook", "gitlab/issue.open.json", {}, "issue.created"),
    (
        "gitlab",
        "Issue Hook",
        "gitlab/issue.open.json",
        {"object_attributes__action": "update"},
        "issue.updated",
    ),
    (
        "gitlab",
        "Issue Hook",
        "gitlab/issue.open.json",
        {"object_attributes__action": "close"},
        "issue.closed",
    ),
    ("gitlab", "Note Hook", "gitlab/note.issue.create.json", {}, "issue.commented"),
    ("gitlab", "Merge Request Hook", "gitlab/merge_request.open.json", {}, "pr.opened"),
    (
        "gitlab",
        "Merge Request Hook",
        "gitlab/merge_request.open.json",
        {"object_attributes__action": "update"},
        "pr.updated",
    ),
    (
        "gitlab",
        "Merge Request Hook",
        "gitlab/merge_request.open.json",
        {"object_attributes__action": "close"},
        "pr.closed",
    ),
    (
        "gitlab",
        "Merge Request Hook",
        "gitlab/merge_request.open.json",
        {"object_attributes__action": "merge"},
        "pr.merged",
    ),
    (
        "gitlab",
        "Merge Request Hook",
        "gitlab/merge_request.open.json",
        {"object_attributes__action": "approved"},
        "pr.reviewed",
    ),
    ("gitlab", "Deployment Hook", "gitlab/deployment.success.json", {}, "deployment.completed"),
]


def test_every_canonical_type_comes_from_a_published_payload_of_each_source(client, anon):
    from tests.handlers.test_webhooks import make_integration, post, signed

    make_integration(client, "github", "gh")
    make_integration(client, "gitlab", "gl")
    assert client.post(f"{URL}/seed").status_code == 200
    seen = {}
    for n, (source, event, name, changes, expected) in enumerate(CANONICAL):
        raw = _published(name, **changes)
        slug = "gh" if source == "github" else "gl"
        response = post(anon, slug, raw, signed(source, raw, event=event, delivery=f"c-{n}"))
        assert response.status_code == 202, (name, response.text)
        seen[(source, name, tuple(changes.items()))] = response.json()["type"]
        assert response.json()["type"] == expected, (source, name, changes)
    types = {t for t in (row[4] for row in CANONICAL)}
    assert types == {
        "issue.created",
        "issue.updated",
        "issue.closed",
        "issue.commented",
        "pr.opened",
        "pr.updated",
        "pr.closed",
        "pr.merged",
        "pr.reviewed",
        "deployment.completed",
    }
    assert {row[0] for row in CANONICAL if row[4] == "pr.closed"} == {"github", "gitlab"}
