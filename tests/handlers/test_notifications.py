"""Notifications: list with filters, unread count, ack, dismiss, dismiss-all."""

from __future__ import annotations

from hub.services import notifications
from tests.assertions import assert_problem

URL = "/api/v1/notifications"


def note(severity: str = "info", kind: str = "agent", title: str = "Hello"):
    return notifications.create(kind=kind, severity=severity, title=title, message="m")


def test_list_newest_first_with_filters(client):
    first = note("info")
    second = note("error", kind="task_failed")

    items = client.get(URL).json()["items"]
    assert [n["id"] for n in items] == [second.id, first.id]
    assert items[0] == {
        "id": second.id,
        "kind": "task_failed",
        "severity": "error",
        "title": "Hello",
        "message": "m",
        "subject": None,
        "read": False,
        "read_at": None,
        "dismissed": False,
        "created_at": items[0]["created_at"],
    }
    errors = client.get(URL, params={"severity": "error"}).json()["items"]
    assert [n["id"] for n in errors] == [second.id]
    by_kind = client.get(URL, params={"kind": "agent"}).json()["items"]
    assert [n["id"] for n in by_kind] == [first.id]


def test_ack_marks_read_and_the_unread_count_follows(client):
    first, second = note("info"), note("critical")
    assert client.get(f"{URL}/unread-count").json() == {
        "unread": 2,
        "by_severity": {"info": 1, "warning": 0, "error": 0, "critical": 1},
    }

    acked = client.post(f"{URL}/{second.id}/ack")

    assert acked.status_code == 200 and acked.json()["read"] is True
    assert client.get(f"{URL}/unread-count").json()["unread"] == 1
    unread = client.get(URL, params={"unread": "true"}).json()["items"]
    assert [n["id"] for n in unread] == [first.id]
    read = client.get(URL, params={"unread": "false"}).json()["items"]
    assert [n["id"] for n in read] == [second.id]
    assert client.post(f"{URL}/{second.id}/ack").json()["read_at"] == acked.json()["read_at"]


def test_dismiss_hides_and_dismiss_all_counts(client):
    first, second, third = note(), note(), note()

    dismissed = client.post(f"{URL}/{first.id}/dismiss")

    assert dismissed.json()["dismissed"] is True
    assert [n["id"] for n in client.get(URL).json()["items"]] == [third.id, second.id]
    assert client.post(f"{URL}/dismiss-all").json() == {"dismissed": 2}
    assert client.get(URL).json()["items"] == []
    assert client.get(f"{URL}/unread-count").json()["unread"] == 0
    assert client.post(f"{URL}/dismiss-all").json() == {"dismissed": 0}


def test_unknown_notification_is_404(client):
    assert_problem(client.post(f"{URL}/ntf_nope/ack"), 404, "notification_not_found")
    assert_problem(client.post(f"{URL}/ntf_nope/dismiss"), 404, "notification_not_found")


def test_viewers_read_but_cannot_ack(client, keyring):
    from tests.conftest import auth

    item = note()
    viewer = auth(keyring["viewer"])
    assert client.get(URL, headers=viewer).status_code == 200
    assert_problem(client.post(f"{URL}/{item.id}/ack", headers=viewer), 403)
