"""Subscriptions: create (write-only encrypted secret), read, list, delete, deliveries."""

from __future__ import annotations

import pytest

from db.dead_letters import DeadLetter
from db.subscriptions import Subscription
from hub.core.crypto import SecretBox, secret_key
from tests.assertions import assert_problem, error_fields
from tests.factories import make_agent, wait_for

URL = "/api/v1/subscriptions"
NOW = "2026-01-01T12:00:00.000Z"
SECRET = "whsec-0123456789abcdef"
NOWHERE = "http://127.0.0.1:9/hook"  # loopback: refused unless allowlisted


def subscribe(client, **overrides) -> dict:
    body = {"url": NOWHERE, "types": ["task.*"], "secret": SECRET}
    body.update(overrides)
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_answers_the_whole_subscription_without_its_secret(client, clock, settings):
    response = client.post(
        URL,
        json={
            "url": "https://hooks.example.com/aether?team=7",
            "types": ["task.*", "approval.requested"],
            "secret": SECRET,
            "description": "Ops channel",
        },
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"].startswith("sub_")
    assert response.headers["location"] == f"{URL}/{created['id']}"
    assert created == {
        "id": created["id"],
        "url": "https://hooks.example.com/aether?team=7",
        "types": ["task.*", "approval.requested"],
        "description": "Ops channel",
        "active": True,
        "has_secret": True,
        "delivered": 0,
        "failed": 0,
        "pending": 0,
        "created_at": NOW,
        "updated_at": NOW,
    }
    assert SECRET not in response.text

    fetched = client.get(f"{URL}/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert fetched.headers["etag"] == response.headers["etag"]
    assert SECRET not in fetched.text
    assert SECRET not in client.get(URL).text


def test_the_secret_is_encrypted_at_rest(client, settings):
    created = subscribe(client)

    stored = Subscription.get_by_id(created["id"]).secret_encrypted
    assert SECRET not in stored
    assert SecretBox(secret_key(settings)).decrypt(stored) == SECRET


def test_list_is_newest_first_and_pages(client):
    first = subscribe(client, description="first")
    second = subscribe(client, description="second", active=False)

    page_one = client.get(URL, params={"limit": 1}).json()
    assert page_one["items"] == [second]
    assert second["active"] is False
    page_two = client.get(URL, params={"limit": 1, "cursor": page_one["next_cursor"]}).json()
    assert page_two == {"items": [first], "next_cursor": None}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "ftp://example.com/hook"}, "body.url"),
        ({"url": "example.com/hook"}, "body.url"),
        ({"secret": "too-short"}, "body.secret"),
        ({"types": []}, "body.types"),
        ({"types": ["has space"]}, "body.types.0"),
    ],
)
def test_a_malformed_subscription_is_400(client, overrides, field):
    body = {"url": NOWHERE, "types": ["task.*"], "secret": SECRET, **overrides}
    response = client.post(URL, json=body)
    assert_problem(response, 400, "validation_error")
    assert field in error_fields(response)


def test_a_url_without_a_host_is_422(client):
    response = client.post(URL, json={"url": "http://:8080/hook", "types": ["*"], "secret": SECRET})
    assert_problem(response, 422, "invalid_url")
    assert error_fields(response) == {"body.url"}
    assert client.get(URL).json()["items"] == []


def test_unknown_subscriptions_are_404(client):
    for response in (
        client.get(f"{URL}/sub_missing"),
        client.delete(f"{URL}/sub_missing"),
        client.get(f"{URL}/sub_missing/deliveries"),
    ):
        assert_problem(response, 404, "subscription_not_found")


def test_a_matching_event_is_delivered_in_the_background_and_a_refused_address_is_a_failed_attempt(
    client, clock
):
    sub = subscribe(client, types=["agent.*"])
    agent = make_agent(client)

    deliveries = f"{URL}/{sub['id']}/deliveries"
    items = wait_for(
        lambda: client.get(deliveries).json()["items"],
        lambda items: len(items) == 1 and items[0]["last_error"] is not None,
    )
    event = client.get("/api/v1/events", params={"type": "agent.created"}).json()["items"][0]
    assert event["subject"] == agent["id"]
    assert items == [
        {
            "id": items[0]["id"],
            "subscription_id": sub["id"],
            "event_id": event["id"],
            "event_type": "agent.created",
            "status": "pending",
            "attempts": 1,
            "last_status_code": None,
            "last_error": (
                "refused: 127.0.0.1 is a loopback address; "
                "add it to AETHER_OUTBOUND_ALLOWLIST to allow it"
            ),
            "next_attempt_at": "2026-01-01T12:00:02.000Z",  # the first backoff: 2 s
            "delivered_at": None,
            "created_at": NOW,
        }
    ]
    assert items[0]["id"].startswith("dlv_")
    assert client.get(f"{URL}/{sub['id']}").json() == {**sub, "pending": 1}
    assert client.get(deliveries, params={"status": "pending"}).json()["items"] == items
    assert client.get(deliveries, params={"status": "delivered"}).json() == {
        "items": [],
        "next_cursor": None,
    }


def test_delete_drops_the_deliveries_and_discards_their_dead_letters(client, clock):
    sub = subscribe(client, types=["agent.*"])
    other = subscribe(client, types=["agent.*"])
    make_agent(client)
    for each in (sub, other):
        wait_for(
            lambda each=each: client.get(f"{URL}/{each['id']}/deliveries").json()["items"],
            lambda items: len(items) == 1 and items[0]["last_error"] is not None,
        )
    dead = DeadLetter.create(
        id="dlq_test",
        kind="delivery",
        subject_id=client.get(f"{URL}/{sub['id']}/deliveries").json()["items"][0]["id"],
        status="open",
        reason="Delivery failed after 6 attempt(s).",
        error=None,
        attempts=6,
        created_at=clock.now,
    )

    response = client.delete(f"{URL}/{sub['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(f"{URL}/{sub['id']}"), 404, "subscription_not_found")
    assert_problem(client.get(f"{URL}/{sub['id']}/deliveries"), 404, "subscription_not_found")
    letters = client.get("/api/v1/dead-letters", params={"kind": "delivery"}).json()["items"]
    assert [(x["id"], x["status"], x["resolved_at"]) for x in letters] == [
        (dead.id, "discarded", NOW)
    ]
    assert [s["id"] for s in client.get(URL).json()["items"]] == [other["id"]]
    assert client.get(f"{URL}/{other['id']}").json()["pending"] == 1
    deleted = client.get("/api/v1/events", params={"type": "subscription.deleted"}).json()
    assert [e["payload"] for e in deleted["items"]] == [{"subscription_id": sub["id"]}]
