"""Server-sent events: framing, keep-alives, and a stream fed by a producer task."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse

from hub.events.bus import Overflow, Revoked

KEEPALIVE_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering
_END = object()


def frame(event_id: int, event: dict) -> bytes:
    """One SSE event: ``id:``, ``event:`` (the payload's ``type``) and JSON ``data:``."""
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event['type']}\ndata: {data}\n\n".encode()


def wants_stream(accept: str | None, flag: bool | None) -> bool:
    return bool(flag) or "text/event-stream" in (accept or "")


def event_stream(
    produce: Callable[[Callable[[dict], Awaitable[None]]], Awaitable[object]],
    spawn: Callable[[Awaitable[object]], asyncio.Task],
    *,
    keepalive: float | None = None,
) -> StreamingResponse:
    """Answer with the events ``produce(sink)`` emits. The producer runs as a task of its own
    (made by ``spawn``), so it finishes even when the client goes away; a keep-alive comment
    goes out whenever it has been silent for ``keepalive`` seconds."""
    keepalive = KEEPALIVE_SECONDS if keepalive is None else keepalive
    queue: asyncio.Queue = asyncio.Queue()

    async def sink(event: dict) -> None:
        queue.put_nowait(event)

    async def run() -> None:
        try:
            await produce(sink)
        except Exception as exc:  # the producer's failure becomes an `error` event
            problem = getattr(exc, "to_dict", None)
            body = problem(None) if problem else {"status": 500, "code": "internal_error"}
            queue.put_nowait({"type": "error", "problem": body})
        finally:
            queue.put_nowait(_END)

    # Start producing now, not when the body is first read: a client that is gone before the
    # response starts must not leave the producer unstarted (and its session busy).
    spawn(run())

    async def body() -> AsyncIterator[bytes]:
        event_id = 0
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=keepalive)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if event is _END:
                return
            event_id += 1
            yield frame(event_id, event)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


# --- the event log's stream ---------------------------------------------------------------

_FRAMES: OrderedDict[tuple[int, str], bytes] = OrderedDict()
_FRAMES_KEPT = 2048


def event_frame(event: dict) -> bytes:
    """The SSE frame of a logged event, encoded once for all the streams that send it (the
    bus hands every follower the same event). Keyed by id and trace id: one process may
    serve several databases (tests), whose ids repeat."""
    key = (event["id"], event["trace_id"])
    encoded = _FRAMES.get(key)
    if encoded is None:
        encoded = _FRAMES[key] = frame(event["id"], event)
        if len(_FRAMES) > _FRAMES_KEPT:
            _FRAMES.popitem(last=False)
    return encoded


REVOKED = {
    "type": "revoked",
    "code": "api_key_revoked",
    "detail": "The API key of this stream was revoked; the stream ends.",
}


def log_stream(updates: AsyncIterator) -> StreamingResponse:
    """The SSE response of ``hub.events.bus`` updates: an event (its frame), ``None`` (a
    keep-alive comment), an ``Overflow`` (an ``overflow`` message, then the end) or
    ``Revoked`` (a ``revoked`` message, then the end)."""

    async def body() -> AsyncIterator[bytes]:
        async for item in updates:
            if item is None:
                yield b": keep-alive\n\n"
            elif isinstance(item, Overflow):
                data = json.dumps({"type": "overflow", "last_event_id": item.last_event_id})
                yield f"event: overflow\ndata: {data}\n\n".encode()
                return
            elif isinstance(item, Revoked):
                yield f"event: revoked\ndata: {json.dumps(REVOKED)}\n\n".encode()
                return
            else:
                yield event_frame(item)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
