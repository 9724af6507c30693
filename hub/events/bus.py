"""Live events in this process: one reader of the log feeding every stream client.

**Fan-out.** The ``Bus`` reads new events from the database (one query per wake-up, however
many clients) and offers each to every ``Follower`` whose globs match. It wakes when this
process commits events (an after-commit hook), on PostgreSQL when any process commits events
(``LISTEN aether_events`` on a connection of its own, in a thread), and every
``AETHER_EVENT_POLL_SECONDS`` regardless. Writers never wait for readers: a follower has a
bounded buffer; when it is full the follower is marked overflowed and dropped, and its
stream ends with an ``overflow`` message carrying the last id it was sent.

**Replay without gap or duplicate.** ``follow()`` registers its follower *before* it reads
the log: an event committed before the registration was committed before the read (so the
read finds it), one committed after reaches the buffer. Event ids commit in id order (see
``hub.events.log``), so ids are the cursor; what the read already sent is skipped in the buffer.

The durable consumers (triggers and subscriptions, exactly once) are ``hub.runtime.processor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import peewee

from db.base import database, is_postgres
from db.events import PAGE, latest_id, read_after
from hub.core import access
from hub.core.aio import cancel_and_wait
from hub.events import log as events

log = logging.getLogger("aether.events")


@dataclass(frozen=True)
class Overflow:
    """A follower fell too far behind: ``last_event_id`` is the last event it was sent."""

    last_event_id: int | None


_ENDED = object()  # in a follower's buffer: it overflowed or the bus stopped
_REVOKED = object()  # in a follower's buffer: the key that opened the stream was revoked


@dataclass(frozen=True)
class Revoked:
    """The stream ends: the API key that opened it was revoked."""


@dataclass(eq=False)
class Follower:
    globs: tuple[str, ...]
    buffer: asyncio.Queue
    overflowed: bool = False

    def offer(self, event: dict) -> bool:
        if not events.matches(self.globs, event["type"]):
            return True
        try:
            self.buffer.put_nowait(event)
        except asyncio.QueueFull:
            self.end()
            return False
        return True

    def revoke(self) -> None:
        """End the stream because its key was revoked (on the bus's loop)."""
        while not self.buffer.empty():
            self.buffer.get_nowait()
        self.buffer.put_nowait(_REVOKED)

    def end(self) -> None:
        """Drop what is buffered and leave the end marker: the client resumes from the last
        event it was actually sent, so nothing dropped here is lost to it."""
        self.overflowed = True
        while not self.buffer.empty():
            self.buffer.get_nowait()
        self.buffer.put_nowait(_ENDED)


@dataclass(eq=False)
class _Stream:
    """One ``follow()``: its current follower (a new one after an overflow during the
    replay) and whether its key was revoked."""

    follower: Follower
    revoked: bool = False

    def revoke(self) -> None:  # on the bus's loop
        self.revoked = True
        self.follower.revoke()


class Bus:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.followers: set[Follower] = set()
        self.cursor = 0  # the last event id offered to the followers
        self.on_wake: list = []  # more work when events arrive (the processor, deliveries)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        # The listener also listens on a channel of its own, so that stop() wakes it at once.
        self._stop_channel = f"{events.CHANNEL}_stop_{uuid.uuid4().hex[:12]}"

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.cursor = await asyncio.to_thread(latest_id)
        events.on_committed(self.poke)
        self._tasks.append(self._loop.create_task(self._read_forever()))
        if is_postgres():
            self._listener = threading.Thread(
                target=self._listen, name="aether-events-listen", daemon=True
            )
            self._listener.start()

    async def stop(self) -> None:
        events.off_committed(self.poke)
        self._stop.set()

        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        if self._listener is not None:
            await asyncio.to_thread(self._wake_listener)
            await asyncio.to_thread(self._listener.join, 5.0)
            self._listener = None
        for follower in list(self.followers):
            follower.end()  # the stream ends; the client resumes elsewhere
        self.followers.clear()

    def poke(self) -> None:
        """New events were committed (callable from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake.set)

    # --- reading -------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.event_poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            for callback in self.on_wake:
                callback()
            try:
                await self._dispatch()
            except (peewee.PeeweeException, OSError):
                log.warning("reading new events failed", exc_info=True)

    async def _dispatch(self) -> None:
        if not self.followers:
            # Nobody listens: skip the reads, only keep the cursor near the end of the log.
            self.cursor = await asyncio.to_thread(latest_id)
            return
        while True:
            batch = await asyncio.to_thread(read_after, self.cursor)
            for event in batch:
                for follower in list(self.followers):
                    if not follower.offer(event):
                        self.followers.discard(follower)
                self.cursor = event["id"]
            if len(batch) < PAGE:
                return

    def _wake_listener(self) -> None:
        with contextlib.suppress(peewee.PeeweeException, OSError):
            database.execute_sql("SELECT pg_notify(%s, '')", (self._stop_channel,))

    def _listen(self) -> None:
        """PostgreSQL: wake the bus on every other process's events (a thread of its own)."""
        import psycopg

        url = self.settings.effective_database_url
        url = "postgresql://" + url.split("://", 1)[1]
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {events.CHANNEL}")
                    conn.execute(f"LISTEN {self._stop_channel}")
                    self.poke()  # catch up on anything written while not listening
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=5.0, stop_after=1):
                            # This process's own commits woke the bus already (after commit).
                            if notice.payload != events.PROCESS_TOKEN:
                                self.poke()
            except psycopg.Error:
                if self._stop.is_set():
                    return
                log.warning("listening for events failed; retrying", exc_info=True)
                self._stop.wait(1.0)

    # --- following -----------------------------------------------------------------------

    def register(self, globs: tuple[str, ...]) -> Follower:
        follower = Follower(globs, asyncio.Queue(maxsize=max(1, self.settings.event_stream_buffer)))
        self.followers.add(follower)
        return follower

    def unregister(self, follower: Follower) -> None:
        self.followers.discard(follower)

    def follow(
        self,
        globs: tuple[str, ...],
        last_event_id: int | None,
        keepalive: float = 15.0,
        key_id: str | None = None,
    ) -> AsyncIterator[dict | Overflow | Revoked | None]:
        """New events matching ``globs``; with ``last_event_id``, first the ones after it from
        the log. ``None`` after ``keepalive`` seconds of silence; ends with ``Overflow`` when
        the client fell too far behind.

        The follower is registered here, at the call, not at the first iteration: a stream
        gets every event committed after its request was handled, even when the client acts
        as soon as it has the response headers. (Never iterated, it is dropped when its
        buffer fills.) With ``key_id``, the stream ends with ``Revoked`` when that key is
        revoked (``hub.core.access``)."""
        stream = _Stream(self.register(globs))
        following = self._follow(stream, globs, last_event_id, keepalive)
        if key_id is None:
            return following
        loop = asyncio.get_running_loop()
        token = access.watch.hold(key_id, lambda: loop.call_soon_threadsafe(stream.revoke))
        return self._guarded(following, token)

    async def _guarded(self, stream: AsyncIterator, token: int) -> AsyncIterator:
        try:
            async for item in stream:
                yield item
        finally:
            access.watch.release(token)

    async def _follow(
        self,
        stream: _Stream,
        globs: tuple[str, ...],
        last_event_id: int | None,
        keepalive: float,
    ) -> AsyncIterator[dict | Overflow | Revoked | None]:
        sent = last_event_id
        follower = stream.follower
        try:
            async for event in replay((), last_event_id):  # the log, until nothing newer
                if stream.revoked:
                    yield Revoked()
                    return
                sent = event["id"]
                if events.matches(globs, event["type"]):
                    yield event
                if follower.overflowed and self._tasks:  # live traffic filled the buffer
                    self.unregister(follower)
                    follower = stream.follower = self.register(globs)  # the log has it all
            while True:
                if follower.buffer.empty():
                    try:
                        async with asyncio.timeout(keepalive):
                            event = await follower.buffer.get()
                    except TimeoutError:
                        yield None  # silence: time for a keep-alive
                        continue
                else:
                    event = follower.buffer.get_nowait()
                if event is _ENDED:
                    yield Overflow(sent)
                    return
                if event is _REVOKED:
                    yield Revoked()
                    return
                if sent is not None and event["id"] <= sent:
                    continue  # the replay sent it already
                sent = event["id"]
                yield event
        finally:
            self.unregister(follower)


async def replay(globs: tuple[str, ...], after: int | None) -> AsyncIterator[dict]:
    """The events after ``after`` up to the end of the log (none without ``after``)."""
    if after is None:
        return
    while True:
        batch = await asyncio.to_thread(read_after, after)
        for event in batch:
            after = event["id"]
            if events.matches(globs, event["type"]):
                yield event
        if len(batch) < PAGE:
            return
