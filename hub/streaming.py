"""Server-sent events: framing, keep-alives, and a stream fed by a producer task."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse

KEEPALIVE_SECONDS = 15.0
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
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
