"""Deliveries: signed POSTs to a real local receiver, retries with backoff, dead letters,
the address policy, leases, and the background loop.

Most tests drive ``deliveries.tick`` directly (no background loop runs: the ``app`` fixture
is never started) with the fake clock, so the backoff is stepped, not waited for.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading

import pytest

from db.base import write_transaction
from db.dead_letters import DeadLetter
from db.events import Event
from db.notifications import Notification
from db.subscriptions import Delivery
from hub.events import log as events
from hub.runtime import deliveries, instance, processor
from hub.services import dead_letters, subscriptions
from tests.factories import wait_for
from tests.servers import serve

SECRET = "whsec-0123456789abcdef"
NOW = "2026-01-01T12:00:00.000Z"


@pytest.fixture
def settings(settings):
    return settings.replace(
        outbound_allowlist=("127.0.0.1",),
        delivery_max_attempts=3,
        delivery_backoff_seconds=1.0,
        delivery_backoff_max_seconds=2.0,
        delivery_timeout_seconds=5.0,
    )


class Receiver:
    """An ASGI webhook receiver answering ``statuses`` in turn (the last one repeats); it
    checks each signature as a receiver would. With a ``gate``, it answers once the gate
    opens."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.gate: threading.Event | None = None
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append(
            {
                "event": headers.get("x-aether-event"),
                "delivery": headers.get("x-aether-delivery"),
                "content_type": headers.get("content-type"),
                "verified": deliveries.verify(SECRET, headers.get("x-aether-signature"), body),
                "body": json.loads(body),
            }
        )
        if self.gate is not None:
            await asyncio.to_thread(self.gate.wait, 30)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        extra = [(b"location", b"/elsewhere")] if status == 302 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"nope"})


@pytest.fixture
def receiver():
    """``(url, Receiver)``; the test sets the statuses."""
    hook = Receiver(200)
    with serve(hook) as port:
        yield f"http://127.0.0.1:{port}/hook", hook


def subscribe(url: str, types=("task.*",)) -> str:
    return subscriptions.create({"url": url, "types": list(types), "secret": SECRET}).id


def emit(type_: str, **payload) -> int:
    """Write an event and let the durable processor queue its deliveries."""
    with write_transaction():
        event = events.emit(type_, subject="tsk_1", payload=payload)
    while processor.process_batch():
        pass
    return event.id


def tick() -> list[str]:
    return asyncio.run(deliveries.tick(instance.current()))


def only_delivery() -> Delivery:
    [delivery] = Delivery.select()
    return delivery


def test_a_receiver_that_fails_then_succeeds_gets_the_same_delivery_signed_each_time(
    app, clock, receiver
):
    url, hook = receiver
    hook.statuses = [500, 503, 200]
    sub = subscribe(url)
    event_id = emit("task.completed", task_id="tsk_1")
    delivery_id = only_delivery().id

    assert tick() == ["retrying"]
    assert only_delivery().to_api() == {
        "id": delivery_id,
        "subscription_id": sub,
        "event_id": event_id,
        "event_type": "task.completed",
        "status": "pending",
        "attempts": 1,
        "last_status_code": 500,
        "last_error": "the receiver answered HTTP 500: nope",
        "next_attempt_at": "2026-01-01T12:00:01.000Z",
        "delivered_at": None,
        "created_at": NOW,
    }
    assert tick() == []  # not due yet
    clock.advance(seconds=1)
    assert tick() == ["retrying"]
    assert only_delivery().next_attempt_at.isoformat() == "2026-01-01T12:00:03"  # 1 s, then 2 s
    clock.advance(seconds=2)
    assert tick() == ["delivered"]

    assert only_delivery().to_api() == {
        "id": delivery_id,
        "subscription_id": sub,
        "event_id": event_id,
        "event_type": "task.completed",
        "status": "delivered",
        "attempts": 3,
        "last_status_code": 200,
        "last_error": None,
        "next_attempt_at": None,
        "delivered_at": "2026-01-01T12:00:03.000Z",
        "created_at": NOW,
    }
    shown = Event.get_by_id(event_id).to_api()
    assert hook.seen == 3 * [
        {
            "event": "task.completed",
            "delivery": delivery_id,
            "content_type": "application/json",
            "verified": True,
            "body": shown,
        }
    ]
    assert tick() == []
    assert DeadLetter.select().count() == 0


def test_a_receiver_that_always_fails_dead_letters_and_the_retry_delivers(app, clock, receiver):
    url, hook = receiver
    hook.statuses = [500]
    sub = subscribe(url)
    emit("task.failed")
    delivery_id = only_delivery().id

    outcomes = []
    for _ in range(3):
        outcomes += tick()
        clock.advance(seconds=2)
    assert outcomes == ["retrying", "retrying", "failed"]
    assert tick() == []
    delivery = only_delivery().to_api()
    assert (delivery["status"], delivery["attempts"], delivery["next_attempt_at"]) == (
        "failed",
        3,
        None,
    )
    [letter] = DeadLetter.select()
    assert letter.to_api() == {
        "id": letter.id,
        "kind": "delivery",
        "subject_id": delivery_id,
        "status": "open",
        "reason": "Delivery failed after 3 attempt(s).",
        "error": {"status_code": 500, "detail": "the receiver answered HTTP 500: nope"},
        "attempts": 3,
        "created_at": "2026-01-01T12:00:04.000Z",
        "resolved_at": None,
    }
    [failed] = Event.select().where(Event.type == "delivery.failed")
    assert (failed.subject, failed.payload["subscription_id"]) == (delivery_id, sub)
    [note] = Notification.select()
    assert (note.kind, note.subject) == ("delivery_failed", sub)

    hook.statuses = [200]  # the receiver recovers
    dead_letters.retry(letter.id)
    assert only_delivery().to_api()["status"] == "pending"
    assert only_delivery().attempts == 0
    assert tick() == ["delivered"]
    assert only_delivery().to_api()["attempts"] == 1
    assert DeadLetter.get_by_id(letter.id).status == "retried"
    assert len(hook.seen) == 4 and {s["delivery"] for s in hook.seen} == {delivery_id}


def test_dead_deliveries_of_one_subscription_raise_one_notification(app, clock, receiver):
    url, hook = receiver
    hook.statuses = [500]
    subscribe(url)
    emit("task.failed")
    emit("task.failed")
    rounds = []
    for _ in range(3):
        rounds.append(sorted(tick()))
        clock.advance(seconds=2)
    assert rounds == [2 * ["retrying"], 2 * ["retrying"], 2 * ["failed"]]
    assert DeadLetter.select().count() == 2
    assert Notification.select().count() == 1


def test_a_discarded_dead_delivery_stays_failed(app, clock, receiver):
    url, hook = receiver
    hook.statuses = [500]
    subscribe(url)
    emit("task.failed")
    for _ in range(3):
        tick()
        clock.advance(seconds=2)
    [letter] = DeadLetter.select()

    assert dead_letters.discard(letter.id).status == "discarded"
    assert only_delivery().status == "failed"
    assert tick() == []


def test_a_loopback_receiver_is_refused_without_the_allowlist(app, clock, receiver):
    url, hook = receiver
    runtime = instance.current()
    runtime.settings = runtime.settings.replace(outbound_allowlist=())
    subscribe(url)
    emit("task.created")

    assert tick() == ["retrying"]
    delivery = only_delivery()
    assert (delivery.last_status_code, delivery.last_error) == (
        None,
        "refused: 127.0.0.1 is a loopback address; add it to AETHER_OUTBOUND_ALLOWLIST to allow it",
    )
    assert hook.seen == []


def test_a_redirect_is_a_failed_attempt(app, clock, receiver):
    url, hook = receiver
    hook.statuses = [302]
    subscribe(url)
    emit("task.created")

    assert tick() == ["retrying"]
    delivery = only_delivery()
    assert (delivery.last_status_code, delivery.last_error) == (
        None,
        "the receiver answered with a redirect; deliveries do not follow them",
    )
    assert len(hook.seen) == 1


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(app, clock):
    runtime = instance.current()
    runtime.settings = runtime.settings.replace(delivery_timeout_seconds=0.2)
    hook = Receiver(200)
    hook.gate = threading.Event()
    with serve(hook) as port:
        subscribe(f"http://127.0.0.1:{port}/hook")
        emit("task.created")
        assert tick() == ["retrying"]
        hook.gate.set()
    assert only_delivery().last_error == "request timed out after 0.2 s"


def test_a_lapsed_lease_is_claimed_again_and_the_stalled_attempt_records_nothing(
    app, clock, receiver
):
    url, hook = receiver
    subscribe(url)
    emit("task.created")
    stalled = subscriptions.claim("stalled-hub", 30)
    assert stalled.attempts == 1
    assert tick() == []  # held

    clock.advance(seconds=31)
    assert tick() == ["delivered"]

    assert only_delivery().attempts == 2
    assert subscriptions.delivered(stalled, 200) is False
    assert subscriptions.failed_attempt(stalled, 500, "late") is False
    delivery = only_delivery().to_api()
    assert (delivery["status"], delivery["last_error"]) == ("delivered", None)
    assert len(hook.seen) == 1


def test_a_lease_that_lapses_on_the_last_attempt_fails_for_good(app, clock, receiver):
    url, _ = receiver
    subscribe(url)
    emit("task.created")
    for _ in range(3):
        assert subscriptions.claim("dying-hub", 30) is not None
        clock.advance(seconds=31)

    assert subscriptions.claim("next-hub", 30) is None

    delivery = only_delivery()
    assert (delivery.status, delivery.attempts, delivery.lease_owner) == ("failed", 3, None)
    assert delivery.last_error == "the hub stopped during the last attempt"
    [letter] = DeadLetter.select()
    assert (letter.subject_id, letter.attempts) == (delivery.id, 3)


def test_an_event_trimmed_by_retention_fails_at_once(app, clock, receiver):
    url, hook = receiver
    subscribe(url)
    event_id = emit("task.created")
    Event.delete().where(Event.id == event_id).execute()

    assert tick() == ["failed"]

    delivery = only_delivery()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == (
        f"event {event_id} was removed by retention before it could be delivered"
    )
    assert DeadLetter.select().where(DeadLetter.subject_id == delivery.id).count() == 1
    assert hook.seen == []


def test_only_matching_active_subscriptions_get_deliveries_and_never_of_delivery_events(app, clock):
    tasks = subscribe("https://hooks.example.com/tasks", types=("task.*",))
    everything = subscribe("https://hooks.example.com/all", types=("*",))
    subscriptions.create(
        {"url": "https://hooks.example.com/off", "types": ["*"], "secret": SECRET, "active": False}
    )
    while processor.process_batch():  # the subscription.created events and their deliveries
        pass
    Delivery.delete().execute()
    with write_transaction():
        events.emit("task.created", payload={})
        events.emit("agent.created", payload={})
        events.emit("delivery.failed", payload={})  # the hub's own: never delivered
        events.emit("delivery.shipped", source="shop", payload={})  # someone else's
    while processor.process_batch():
        pass

    queued = sorted((d.subscription_id, d.event_type) for d in Delivery.select())
    assert queued == sorted(
        [
            (tasks, "task.created"),
            (everything, "task.created"),
            (everything, "agent.created"),
            (everything, "delivery.shipped"),
        ]
    )


def test_the_background_loop_delivers_when_woken_and_hands_back_when_stopped(app, receiver):
    url, hook = receiver
    runtime = instance.current()
    runtime.settings = runtime.settings.replace(event_poll_seconds=60.0)
    subscribe(url)

    async def scenario():
        loop_task = asyncio.create_task(deliveries.run_forever(runtime))
        await asyncio.sleep(0)
        await asyncio.to_thread(emit, "task.created")  # consume() wakes the loop
        await asyncio.to_thread(
            wait_for, lambda: [d.status for d in Delivery.select()], lambda s: s == ["delivered"]
        )
        hook.gate = threading.Event()  # the next call hangs: stopping must not wait for it
        await asyncio.to_thread(emit, "task.updated")
        await asyncio.to_thread(wait_for, lambda: len(hook.seen), lambda n: n == 2)
        loop_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop_task
        hook.gate.set()

    asyncio.run(scenario())

    held = Delivery.get(Delivery.event_type == "task.updated")
    assert (held.status, held.attempts, held.lease_owner) == ("pending", 0, None)


def test_sign_and_verify():
    body = b'{"id":1,"type":"task.created"}'
    expected = hmac.new(SECRET.encode(), b"1767268800." + body, hashlib.sha256).hexdigest()

    header = deliveries.sign(SECRET, 1767268800, body)

    assert header == f"t=1767268800,v1={expected}"
    assert deliveries.sign(SECRET, 1767268800, body.decode()) == header
    now = 1767268800 + 299
    assert deliveries.verify(SECRET, header, body, now=now)
    assert deliveries.verify(SECRET, header, body.decode(), now=now)
    assert deliveries.verify(SECRET, f"t=1767268800,v1={'0' * 64},v1={expected}", body, now=now)
    assert deliveries.verify(SECRET, header, body, tolerance=None, now=now + 10**6)
    assert not deliveries.verify(SECRET, header, body, now=1767268800 + 301)  # too old
    assert not deliveries.verify("another-secret-of-16", header, body, now=now)
    assert not deliveries.verify(SECRET, header, body + b" ", now=now)
    for bad in (None, "", "v1=" + expected, "t=1767268800", "t=soon,v1=" + expected):
        assert not deliveries.verify(SECRET, bad, body, now=now)
