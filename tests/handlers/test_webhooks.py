"""Inbound webhooks: each source's signature, replays, the events a delivery becomes."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from db import events as db_events
from db.events import Event
from db.projects import WebhookReceipt
from hub.core import signatures as webhook_signatures
from hub.services import webhooks
from tests.assertions import assert_problem
from tests.handlers.test_projects import make_project

SECRET = "whsec-correct-horse"
HOOKS = "/api/v1/webhooks"

# An issue opened on GitHub, as GitHub sends it: odd spacing, non-ASCII text and a key
# order of its own, so only the exact bytes give the right HMAC.
ISSUE_OPENED = (
    '{"action":"opened",  "issue": {"number": 7, "title": "Crash on start — façade",'
    ' "labels": []}, "repository": {"full_name": "acme/site"}}\n'
).encode()


def make_integration(client, kind: str, slug: str | None = None, **fields) -> dict:
    body = {"kind": kind, "slug": slug or kind, "webhook_secret": SECRET, **fields}
    response = client.post("/api/v1/integrations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def signed(kind: str, raw: bytes, *, event: str, delivery: str | None, secret=SECRET) -> dict:
    """The headers ``kind`` sends with a delivery."""
    headers = {"Content-Type": "application/json"}
    if kind == "github":
        headers |= {"X-Hub-Signature-256": webhook_signatures.sign(secret, raw)}
        headers |= {"X-GitHub-Event": event}
        if delivery:
            headers["X-GitHub-Delivery"] = delivery
    elif kind == "gitlab":
        headers |= {"X-Gitlab-Token": secret, "X-Gitlab-Event": event}
        if delivery:
            headers["X-Gitlab-Event-UUID"] = delivery
    else:
        headers |= {"X-Signature-256": webhook_signatures.sign(secret, raw), "X-Event": event}
        if delivery:
            headers["X-Delivery-Id"] = delivery
    return headers


def post(anon, slug: str, raw: bytes, headers: dict):
    return anon.post(f"{HOOKS}/{slug}", content=raw, headers=headers)


def events_after(marker: int) -> list[Event]:
    return list(Event.select().where(Event.id > marker).order_by(Event.id))


def last_event_id() -> int:
    newest = Event.select().order_by(Event.id.desc()).first()
    return newest.id if newest else 0


# --- the whole path ------------------------------------------------------------------------


def test_a_signed_github_issue_becomes_webhook_received_and_issue_created(client, anon):
    project = make_project(client)
    integration = make_integration(client, "github", "site", project_id=project["id"])
    client.post("/api/v1/event-mappings/seed")
    marker = last_event_id()
    headers = signed("github", ISSUE_OPENED, event="issues", delivery="d-1")

    response = post(anon, "site", ISSUE_OPENED, headers)

    assert response.status_code == 202, response.text
    received, created = events_after(marker)
    assert response.json() == {
        "duplicate": False,
        "delivery_id": "d-1",
        "event_id": received.id,
        "type": "issue.created",
    }
    payload = json.loads(ISSUE_OPENED)
    assert (received.type, received.source, received.subject) == (
        "webhook.received",
        "github",
        "site",
    )
    assert received.payload == {
        "integration_id": integration["id"],
        "project_id": project["id"],
        "event": "issues",
        "action": "opened",
        "delivery_id": "d-1",
        "mapped_type": "issue.created",
        "body": payload,
    }
    assert received.raw == ISSUE_OPENED.decode()
    assert (created.type, created.source, created.subject) == ("issue.created", "github", "site")
    assert created.payload == payload and created.payload["issue"]["title"].endswith("façade")
    assert created.trace_id == received.trace_id and created.raw is None
    receipt = WebhookReceipt.get()
    assert (receipt.integration_id, receipt.delivery_id) == (integration["id"], "d-1")
    assert (receipt.event_id, receipt.type) == (received.id, "issue.created")


def test_a_replayed_delivery_is_acknowledged_once_more_with_nothing_new(client, anon):
    make_integration(client, "github", "site")
    client.post("/api/v1/event-mappings/seed")
    headers = signed("github", ISSUE_OPENED, event="issues", delivery="d-1")
    first = post(anon, "site", ISSUE_OPENED, headers)
    marker = last_event_id()

    again = post(anon, "site", ISSUE_OPENED, headers)

    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "duplicate": True}
    assert events_after(marker) == []
    assert WebhookReceipt.select().count() == 1


def test_an_unmapped_delivery_is_only_webhook_received(client, anon):
    make_integration(client, "github", "site")
    raw = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    marker = last_event_id()

    response = post(anon, "site", raw, signed("github", raw, event="ping", delivery="p-1"))

    assert response.status_code == 202, response.text
    (received,) = events_after(marker)
    assert response.json() == {
        "duplicate": False,
        "delivery_id": "p-1",
        "event_id": received.id,
        "type": None,
    }
    assert received.type == "webhook.received"
    assert received.payload["mapped_type"] is None and received.payload["action"] is None


@pytest.mark.parametrize(
    ("kind", "event", "body", "expected"),
    [
        (
            "gitlab",
            "Merge Request Hook",
            {"object_kind": "merge_request", "object_attributes": {"action": "merge", "iid": 3}},
            "pr.merged",
        ),
        (
            "gitlab",
            "Note Hook",
            {"object_attributes": {"noteable_type": "Issue"}},
            "issue.commented",
        ),
        ("gitlab", "Note Hook", {"object_attributes": {"noteable_type": "Commit"}}, None),
        (
            "github",
            "pull_request",
            {"action": "closed", "pull_request": {"merged": True}},
            "pr.merged",
        ),
        (
            "github",
            "pull_request",
            {"action": "closed", "pull_request": {"merged": False}},
            "pr.closed",
        ),
        (
            "github",
            "deployment_status",
            {"deployment_status": {"state": "success"}},
            "deployment.completed",
        ),
        ("github", "push", {"ref": "refs/heads/main"}, "code.pushed"),
    ],
)
def test_the_default_mappings(client, anon, kind, event, body, expected):
    make_integration(client, kind)
    client.post("/api/v1/event-mappings/seed")
    raw = json.dumps(body).encode()
    marker = last_event_id()

    response = post(anon, kind, raw, signed(kind, raw, event=event, delivery="x-1"))

    assert response.status_code == 202, response.text
    assert response.json()["type"] == expected
    assert [e.type for e in events_after(marker)] == ["webhook.received", *filter(None, [expected])]


def test_generic_mappings_match_on_action_and_the_first_created_wins(client, anon):
    make_integration(client, "generic", "ci")
    mappings = "/api/v1/event-mappings"
    client.post(mappings, json={"source": "generic", "event": "build", "type": "build.any"})
    client.post(
        mappings,
        json={"source": "generic", "event": "build", "action": "failed", "type": "build.failed"},
    )
    first_wins = {"action": "failed"}
    raw = json.dumps(first_wins).encode()

    response = post(anon, "ci", raw, signed("generic", raw, event="build", delivery="b-1"))

    assert response.json()["type"] == "build.any"


def test_a_filter_that_fails_on_the_payload_is_no_match(client, anon, caplog):
    make_integration(client, "generic", "ci")
    mappings = "/api/v1/event-mappings"
    client.post(
        mappings,
        json={"source": "generic", "event": "build", "filter": '.n | test("x")', "type": "a.b"},
    )
    client.post(mappings, json={"source": "generic", "event": "build", "type": "build.seen"})
    raw = b'{"n": 5}'

    response = post(anon, "ci", raw, signed("generic", raw, event="build", delivery="b-1"))

    assert response.status_code == 202, response.text
    assert response.json()["type"] == "build.seen"
    assert any("treated as no match" in r.getMessage() for r in caplog.records)


# --- signatures ----------------------------------------------------------------------------

KINDS = ("github", "gitlab", "generic")


@pytest.mark.parametrize("kind", KINDS)
def test_a_correct_signature_passes_and_a_replay_is_a_duplicate(client, anon, kind):
    make_integration(client, kind)
    raw = b'{"action": "opened"}'
    headers = signed(kind, raw, event="anything", delivery="r-1")

    first = post(anon, kind, raw, headers)
    again = post(anon, kind, raw, headers)

    assert first.status_code == 202, first.text
    assert again.status_code == 200 and again.json() == {**first.json(), "duplicate": True}


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_signature_is_401_and_records_nothing(client, anon, kind):
    make_integration(client, kind)
    raw = b'{"action": "opened"}'
    marker = last_event_id()
    wrong_secret = signed(kind, raw, event="e", delivery="r-1", secret="another-secret")
    tampered = signed(kind, raw, event="e", delivery="r-2")

    assert_problem(post(anon, kind, raw, wrong_secret), 401, "invalid_signature")
    if kind != "gitlab":  # GitLab's token does not cover the body
        assert_problem(post(anon, kind, raw + b" ", tampered), 401, "invalid_signature")
    assert events_after(marker) == [] and WebhookReceipt.select().count() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_signature_is_401(client, anon, kind):
    make_integration(client, kind)
    raw = b"{}"
    headers = signed(kind, raw, event="e", delivery="r-1")
    headers = {
        k: v for k, v in headers.items() if k.lower() != webhook_signatures.SIGNATURE_HEADER[kind]
    }

    assert_problem(post(anon, kind, raw, headers), 401, "invalid_signature")


def test_an_integration_without_a_secret_or_inactive_is_401(client, anon):
    client.post("/api/v1/integrations", json={"kind": "github", "slug": "open"})
    make_integration(client, "github", "off", active=False)
    raw = b"{}"

    for slug in ("open", "off"):
        response = post(anon, slug, raw, signed("github", raw, event="push", delivery="1"))
        assert_problem(response, 401, "invalid_signature")
    assert WebhookReceipt.select().count() == 0


def test_an_unknown_slug_is_404(anon):
    raw = b"{}"
    response = post(anon, "nobody", raw, signed("github", raw, event="push", delivery="1"))
    assert_problem(response, 404, "integration_not_found")


def test_the_body_must_be_a_json_object(client, anon):
    make_integration(client, "github", "site")
    raw = b"[1, 2]"

    response = post(anon, "site", raw, signed("github", raw, event="push", delivery="1"))

    assert_problem(response, 400, "validation_error")


# --- delivery ids and races ----------------------------------------------------------------


def test_without_a_delivery_id_the_body_hash_deduplicates(client, anon):
    make_integration(client, "generic", "ci")
    raw = b'{"build": 1}'
    headers = signed("generic", raw, event="build", delivery=None)

    first = post(anon, "ci", raw, headers)
    again = post(anon, "ci", raw, headers)
    other = post(
        anon, "ci", b'{"build": 2}', signed("generic", b'{"build": 2}', event="b", delivery=None)
    )

    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert first.status_code == 202 and first.json()["delivery_id"] == digest
    assert again.status_code == 200 and again.json() == {**first.json(), "duplicate": True}
    assert other.status_code == 202


def test_the_same_delivery_id_on_two_integrations_is_two_deliveries(client, anon):
    make_integration(client, "github", "one")
    make_integration(client, "github", "two")
    raw = b"{}"
    headers = signed("github", raw, event="push", delivery="same")

    assert post(anon, "one", raw, headers).status_code == 202
    assert post(anon, "two", raw, headers).status_code == 202


def test_a_delivery_committed_by_a_racing_request_is_a_duplicate(client, anon, monkeypatch):
    """The unique index decides a race: the loser's insert fails and it answers duplicate."""
    make_integration(client, "github", "site")
    headers = signed("github", ISSUE_OPENED, event="issues", delivery="d-1")
    first = post(anon, "site", ISSUE_OPENED, headers)
    marker = last_event_id()
    real = webhooks.projects.receipt
    calls = []

    def first_look_misses(integration_id, delivery_id):  # as if the winner had not committed
        calls.append(delivery_id)
        return None if len(calls) == 1 else real(integration_id, delivery_id)

    monkeypatch.setattr(webhooks.projects, "receipt", first_look_misses)
    again = post(anon, "site", ISSUE_OPENED, headers)

    assert len(calls) == 2
    assert again.status_code == 200 and again.json() == {**first.json(), "duplicate": True}
    assert events_after(marker) == []


def test_concurrent_identical_deliveries_make_one_event(client, anon):
    make_integration(client, "github", "site")
    client.post("/api/v1/event-mappings/seed")
    headers = signed("github", ISSUE_OPENED, event="issues", delivery="d-1")
    marker = last_event_id()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(anon, "site", ISSUE_OPENED, headers), range(8)))

    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert [e.type for e in events_after(marker)] == ["webhook.received", "issue.created"]
    assert len({a.json()["event_id"] for a in answers}) == 1


# --- the pure functions --------------------------------------------------------------------


def test_signature_functions():
    body = b'{"a": 1}'
    good = webhook_signatures.sign("s3cret-key", body)

    assert good == "sha256=" + __import__("hmac").new(b"s3cret-key", body, "sha256").hexdigest()
    assert webhook_signatures.hmac_sha256_ok("s3cret-key", body, good)
    assert webhook_signatures.hmac_sha256_ok("s3cret-key", body, good.upper())
    assert not webhook_signatures.hmac_sha256_ok("s3cret-key", body, good[:-1])
    assert not webhook_signatures.hmac_sha256_ok("s3cret-key", body, "sha1=" + good[7:])
    assert not webhook_signatures.hmac_sha256_ok("s3cret-key", body, None)
    assert not webhook_signatures.hmac_sha256_ok("s3cret-key", body, "")
    assert webhook_signatures.token_ok("s3cret-key", "s3cret-key")
    assert not webhook_signatures.token_ok("s3cret-key", "s3cret-kez")
    assert not webhook_signatures.token_ok("s3cret-key", None)


# --- end to end ----------------------------------------------------------------------------


def test_a_trigger_turns_a_signed_github_issues_delivery_into_a_task(client, anon):
    """The README's walk-through: a GitHub `issues` delivery, signed, becomes `issue.created`
    through the seeded mappings, and a trigger on it makes a task in the delivery's trace,
    by the background event processor."""
    from tests.factories import make_agent, wait_for

    make_integration(client, "github", "site")
    assert client.post("/api/v1/event-mappings/seed").status_code == 200
    make_agent(client, id="triager")
    trigger = client.post(
        "/api/v1/triggers",
        json={
            "name": "Triage new issues",
            "event_type": "issue.created",
            "filter": '.payload.repository.full_name == "acme/site"',
            "action": {
                "kind": "create_task",
                "agent_id": "triager",
                "description": "Triage #{{ event.payload.issue.number }}: "
                "{{ event.payload.issue.title }}",
            },
        },
    )
    assert trigger.status_code == 201, trigger.text

    headers = signed("github", ISSUE_OPENED, event="issues", delivery="e2e-1")
    accepted = post(anon, "site", ISSUE_OPENED, headers)
    assert accepted.status_code == 202, accepted.text
    again = post(anon, "site", ISSUE_OPENED, headers)  # GitHub redelivers: no second task
    assert again.json()["duplicate"] is True

    tasks = wait_for(
        lambda: client.get("/api/v1/tasks", params={"agent_id": "triager"}).json()["items"],
        lambda items: len(items) >= 1,
    )
    [task] = tasks
    assert task["description"] == "Triage #7: Crash on start — façade"
    received = client.get(f"/api/v1/events/{accepted.json()['event_id']}").json()
    assert task["trace_id"] == received["trace_id"]
    fired = wait_for(
        lambda: client.get(f"/api/v1/triggers/{trigger.json()['id']}").json(),
        lambda found: found["fired_count"] == 1,
    )
    assert fired["last_error"] is None
    wait_for(lambda: eventbus_position(), lambda position: position >= received["id"] + 1)
    assert len(client.get("/api/v1/tasks", params={"agent_id": "triager"}).json()["items"]) == 1


def eventbus_position() -> int:
    return db_events.consumers_position()
