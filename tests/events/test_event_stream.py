"""The live event stream: SSE framing, resume with ``Last-Event-ID`` without gap or duplicate
while events keep arriving, keep-alives, the bounded buffer of a slow client, and the
WebSocket ``subscribe`` frames."""

from __future__ import annotations

import asyncio
import threading

import pytest

from db.events import Event
from hub.events import log as events
from hub.events.bus import PAGE, Bus, Overflow
from tests.assertions import assert_problem
from tests.factories import make_agent, make_task
from tests.sse import frames

STREAM = "/api/v1/events/stream"


def take(stream, until_id: int | None = None, count: int | None = None) -> list[dict]:
    """Events (decoded) from an open SSE response until one with ``until_id`` or ``count``."""
    taken = []
    for block in stream:
        if "data" not in block:
            continue
        event = block["data"]
        assert block["id"] == str(event["id"])
        assert block["event"] == event["type"]
        taken.append(event)
        if event["id"] == until_id or (count is not None and len(taken) == count):
            return taken
    raise AssertionError(f"the stream ended after {len(taken)} events")


def log_ids(after: int, types: str | None = None) -> list[int]:
    query = Event.select(Event.id, Event.type).where(Event.id > after).order_by(Event.id)
    return [row.id for row in query if events.matches(events.parse_globs(types), row.type)]


def test_a_new_task_arrives_on_the_stream_with_its_id_and_type(client):
    make_agent(client, id="streamer")
    with client.stream("GET", STREAM, params={"types": "task.*"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        task = make_task(client, agent_id="streamer", description="watch me")
        [created] = take(frames(response.iter_lines()), count=1)
    assert created["type"] == "task.created"
    assert created["subject"] == task["id"]
    assert created["payload"]["task_id"] == task["id"]
    assert client.get(f"/api/v1/events/{created['id']}").json() == created


def test_resume_replays_what_was_missed_then_goes_live_with_no_gap_or_duplicate(client, app):
    """A writer thread keeps committing events while the client resumes from an old id: the
    replay (several pages of the log) and the live tail meet exactly once."""
    for n in range(PAGE + 50):
        events.emit("load.before", payload={"n": n})
    start = log_ids(0)[20]
    done = threading.Event()
    written: list[int] = []

    def writer():
        for n in range(300):
            written.append(events.emit("load.during", payload={"n": n}).id)
        done.set()

    thread = threading.Thread(target=writer)
    with client.stream("GET", STREAM, headers={"Last-Event-ID": str(start)}) as response:
        thread.start()
        assert done.wait(60)
        received = take(frames(response.iter_lines()), until_id=written[-1])
    thread.join()
    ids = [event["id"] for event in received]
    assert ids == log_ids(start)  # every one, in order, once
    assert len(ids) == PAGE + 50 - 21 + 300


def test_resume_honours_the_type_globs(client):
    for n in range(10):
        events.emit("keep.this" if n % 2 else "drop.this", payload={"n": n})
    last = events.emit("keep.last").id
    with client.stream(
        "GET", STREAM, params={"types": "keep.*", "last_event_id": 0, "follow": "false"}
    ) as response:
        received = take(frames(response.iter_lines()), until_id=last)
    assert [event["id"] for event in received] == log_ids(0, "keep.*")
    assert {event["type"] for event in received} == {"keep.this", "keep.last"}


def test_the_header_wins_over_the_query_parameter(client):
    first = events.emit("pick.one").id
    second = events.emit("pick.two").id
    with client.stream(
        "GET",
        STREAM,
        params={"last_event_id": 0, "follow": "false"},
        headers={"Last-Event-ID": str(first)},
    ) as response:
        assert [e["id"] for e in take(frames(response.iter_lines()), until_id=second)] == [second]


def test_follow_false_sends_the_replay_and_ends(client):
    ids = [events.emit("short.lived").id for _ in range(3)]
    response = client.get(STREAM, params={"last_event_id": ids[0], "follow": "false"})
    assert response.status_code == 200
    received = [b["data"] for b in frames(response.text.splitlines())]
    assert [event["id"] for event in received] == ids[1:]


def test_a_bad_last_event_id_is_a_problem(client):
    response = client.get(STREAM, headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


# --- the bus: keep-alives and slow clients ------------------------------------------------


async def _drain(iterator, count: int) -> list:
    return [await anext(iterator) for _ in range(count)]


def test_silence_yields_keep_alives(app, settings):
    async def scenario():
        bus = Bus(settings)
        await bus.start()
        try:
            stream = bus.follow((), None, keepalive=0.05)
            assert await anext(stream) is None
            events.emit("after.silence")
            while (item := await anext(stream)) is None:
                pass
            await stream.aclose()
            return item
        finally:
            await bus.stop()

    assert asyncio.run(scenario())["type"] == "after.silence"


def test_a_slow_client_is_told_it_overflowed_and_resumes_without_gap(app, settings):
    """Writers never wait: a follower whose buffer is full is dropped with the last id it
    got, and resuming from that id yields the rest from the log."""
    slow = settings.replace(event_stream_buffer=3, event_poll_seconds=0.05)

    async def scenario():
        bus = Bus(slow)
        await bus.start()
        try:
            stream = bus.follow(("flood.*",), None, keepalive=5)
            first = events.emit("flood.start").id
            assert (await anext(stream))["id"] == first  # registered and live
            for n in range(20):  # nobody reads meanwhile: the buffer overflows
                events.emit("flood.wave", payload={"n": n})
                await asyncio.sleep(0)
            bus.poke()
            for _ in range(100):
                await asyncio.sleep(0.02)
                if not bus.followers:
                    break
            got = []
            while not isinstance(item := await anext(stream), Overflow):
                got.append(item["id"])
            resumed = bus.follow(("flood.*",), item.last_event_id, keepalive=5)
            rest = []
            last = log_ids(0)[-1]
            while not rest or rest[-1] != last:
                rest.append((await anext(resumed))["id"])
            await resumed.aclose()
            return first, got, item, rest
        finally:
            await bus.stop()

    first, got, overflow, rest = asyncio.run(scenario())
    assert got == []  # what the buffer held is dropped: the client resumes from `first`
    assert overflow.last_event_id == first
    assert [first, *got, *rest] == log_ids(0, "flood.*")


def test_stopping_the_bus_ends_its_followers(app, settings):
    async def scenario():
        bus = Bus(settings)
        await bus.start()
        stream = bus.follow((), None, keepalive=5)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        await bus.stop()
        return await asyncio.wait_for(waiting, 5)

    assert isinstance(asyncio.run(scenario()), Overflow)


def test_a_hub_not_serving_live_events_says_when_to_retry(client, app, monkeypatch):
    monkeypatch.setattr(app.runtime, "bus", None)
    response = client.get(STREAM)
    assert_problem(response, 503, "stream_unavailable")
    assert response.headers["retry-after"] == "1"


# --- WebSocket ------------------------------------------------------------------------------


def _ws(client, secret: str):
    return client.websocket_connect(f"/api/v1/ws?token={secret}", headers={"Authorization": ""})


def test_websocket_subscribers_get_the_same_events(client, keyring):
    make_agent(client, id="ws-watched")
    with _ws(client, keyring["viewer"]) as ws:
        ws.send_json({"type": "subscribe", "types": ["task.*"]})
        assert ws.receive_json()["type"] == "subscribed"
        task = make_task(client, agent_id="ws-watched", description="over the socket")
        frame = ws.receive_json()
    assert frame["type"] == "event"
    assert frame["event"]["type"] == "task.created"
    assert frame["event"]["subject"] == task["id"]
    assert client.get(f"/api/v1/events/{frame['event']['id']}").json() == frame["event"]


def test_websocket_subscribe_resumes_from_last_event_id(client, keyring):
    ids = [events.emit("ws.replay", payload={"n": n}).id for n in range(5)]
    with _ws(client, keyring["viewer"]) as ws:
        ws.send_json({"type": "subscribe", "types": ["ws.*"], "last_event_id": ids[1]})
        assert ws.receive_json()["type"] == "subscribed"
        replayed = [ws.receive_json()["event"]["id"] for _ in range(3)]
        live = events.emit("ws.live").id
        assert ws.receive_json()["event"]["id"] == live
    assert replayed == ids[2:]


@pytest.mark.parametrize("frame", [{"types": ["x.*"], "last_event_id": "7"}, {"types": "x.*"}])
def test_websocket_subscribe_checks_its_frame(client, keyring, frame):
    with _ws(client, keyring["viewer"]) as ws:
        ws.send_json({"type": "subscribe", **frame})
        assert ws.receive_json()["problem"]["code"] == "malformed_frame"
