"""``/api/v1/ws``: one WebSocket for chat and live events.

Frames are JSON objects with a ``type``:

- ``{"type": "chat", "session_id": "…", "content": "…"}`` starts a reply in a session; the
  answer is frames of the same types as the SSE stream (``start``, ``token``…, ``done`` or
  ``error``), each also carrying the ``session_id``;
- ``{"type": "subscribe", "types": ["task.*"], "last_event_id": 42}`` is acknowledged with
  ``subscribed``; then every new event whose type matches arrives as ``{"type": "event",
  "event": {…}}`` (after the replay of those after ``last_event_id``, when given: the same
  no-gap, no-duplicate rule as the SSE stream). A client too far behind gets ``{"type":
  "overflow", "last_event_id": …}`` and its subscription ends; it subscribes again to resume.
  A new ``subscribe`` replaces the previous one; ``{"type": "subscribe", "types": []}`` stops;
- ``{"type": "ping"}`` is answered with ``pong``.

A malformed frame gets an ``error`` frame, never a dropped connection. Authentication is an
API key in ``Authorization``/``X-API-Key`` or ``?token=``; chatting needs the operator role.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from db import base as db_base
from hub.core import generations, metrics
from hub.core.problems import Problem
from hub.engine import turns as chat
from hub.events.bus import Overflow
from hub.runtime import instance
from hub.services import auth

log = logging.getLogger("aether.ws")
POLICY_VIOLATION = 1008


def _problem_frame(problem: Problem, **extra) -> dict:
    return {"type": "error", "problem": problem.to_dict(None), **extra}


def _error(code: str, detail: str) -> dict:
    return {"type": "error", "problem": {"status": 400, "code": code, "detail": detail}}


async def _authenticate(websocket: WebSocket):
    runtime = instance.current()
    secret = auth.credential_from_headers(
        websocket.headers.get("authorization"), websocket.headers.get("x-api-key")
    ) or websocket.query_params.get("token")
    if not secret:
        return None
    if db_base.is_postgres():
        found = await run_in_threadpool(auth.lookup, secret, runtime.settings.admin_token)
    else:
        found = auth.lookup(secret, runtime.settings.admin_token)
    return found[0] if found else None


async def endpoint(websocket: WebSocket) -> None:
    principal = await _authenticate(websocket)
    if principal is None:
        await websocket.close(code=POLICY_VIOLATION, reason="a valid API key is required")
        return
    runtime = instance.current()
    await websocket.accept()
    runtime.websocket_clients += 1
    metrics.WS_CLIENTS.inc()
    forwarder: asyncio.Task | None = None
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                frame = json.loads(raw)
            except ValueError:
                await websocket.send_json(_error("malformed_frame", "A frame must be JSON."))
                continue
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "ping":
                await websocket.send_json({"type": "pong"})
            elif kind == "subscribe":
                types = frame.get("types")
                if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                    await websocket.send_json(
                        _error("malformed_frame", "`types` must be a list of type globs.")
                    )
                    continue
                last_event_id = frame.get("last_event_id")
                if last_event_id is not None and (
                    not isinstance(last_event_id, int) or isinstance(last_event_id, bool)
                ):
                    await websocket.send_json(
                        _error("malformed_frame", "`last_event_id` must be an integer.")
                    )
                    continue
                if forwarder is not None:
                    forwarder.cancel()
                    forwarder = None
                await websocket.send_json({"type": "subscribed", "types": types})
                if types and runtime.bus is not None:
                    forwarder = asyncio.create_task(
                        _forward(websocket, runtime.bus, tuple(types), last_event_id)
                    )
            elif kind == "chat":
                await _chat(websocket, principal, frame)
            else:
                await websocket.send_json(
                    _error("unknown_frame", "`type` must be chat, subscribe or ping.")
                )
    except WebSocketDisconnect:
        pass
    finally:
        if forwarder is not None:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder
        runtime.websocket_clients -= 1
        metrics.WS_CLIENTS.dec()


async def _forward(websocket: WebSocket, bus, types: tuple[str, ...], last_event_id) -> None:
    """Send the subscribed events until the subscription is replaced or the client leaves."""
    try:
        async for item in bus.follow(types, last_event_id):
            if item is None:
                continue  # WebSocket pings keep the connection alive
            if isinstance(item, Overflow):
                await websocket.send_json({"type": "overflow", "last_event_id": item.last_event_id})
                return
            await websocket.send_json({"type": "event", "event": item})
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left


async def _chat(websocket: WebSocket, principal: auth.Principal, frame: dict) -> None:
    session_id, content = frame.get("session_id"), frame.get("content")
    if not isinstance(session_id, str) or not isinstance(content, str) or not content:
        await websocket.send_json(
            _error("malformed_frame", "A chat frame needs `session_id` and `content` strings.")
        )
        return
    if not principal.allows("operator"):
        await websocket.send_json(
            {
                "type": "error",
                "problem": {
                    "status": 403,
                    "code": "role_too_low",
                    "detail": "Chatting needs the operator role.",
                },
            }
        )
        return

    async def sink(event: dict) -> None:
        await websocket.send_json({**event, "session_id": session_id})

    try:
        plan = await run_in_threadpool(chat.plan_turn, session_id, content=content)
    except Problem as problem:
        await websocket.send_json(_problem_frame(problem, session_id=session_id))
        return
    task = generations.current().spawn(chat.generate(plan, sink))
    try:
        await task
    except Problem as problem:
        await websocket.send_json(_problem_frame(problem, session_id=session_id))
