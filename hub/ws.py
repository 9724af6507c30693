"""``/api/v1/ws``: one WebSocket for chat and (soon) live events.

Frames are JSON objects with a ``type``:

- ``{"type": "chat", "session_id": "…", "content": "…"}`` starts a reply in a session; the
  answer is frames of the same types as the SSE stream (``start``, ``token``…, ``done`` or
  ``error``), each also carrying the ``session_id``;
- ``{"type": "subscribe", "types": ["task.*"]}`` is acknowledged with ``subscribed``; event
  delivery arrives with the event log;
- ``{"type": "ping"}`` is answered with ``pong``.

A malformed frame gets an ``error`` frame, never a dropped connection. Authentication is an
API key in ``Authorization``/``X-API-Key`` or ``?token=``; chatting needs the operator role.
"""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from db import base as db_base
from hub import auth, metrics, state
from hub.problems import Problem
from hub.services import chat

log = logging.getLogger("aether.ws")
POLICY_VIOLATION = 1008


def _problem_frame(problem: Problem, **extra) -> dict:
    return {"type": "error", "problem": problem.to_dict(None), **extra}


def _error(code: str, detail: str) -> dict:
    return {"type": "error", "problem": {"status": 400, "code": code, "detail": detail}}


async def _authenticate(websocket: WebSocket):
    runtime = state.runtime()
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
    runtime = state.runtime()
    await websocket.accept()
    runtime.websocket_clients += 1
    metrics.WS_CLIENTS.inc()
    subscriptions: list[str] = []
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
                subscriptions = types
                await websocket.send_json({"type": "subscribed", "types": subscriptions})
            elif kind == "chat":
                await _chat(websocket, principal, frame)
            else:
                await websocket.send_json(
                    _error("unknown_frame", "`type` must be chat, subscribe or ping.")
                )
    except WebSocketDisconnect:
        pass
    finally:
        runtime.websocket_clients -= 1
        metrics.WS_CLIENTS.dec()


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
    task = state.runtime().generations.spawn(chat.generate(plan, sink))
    try:
        await task
    except Problem as problem:
        await websocket.send_json(_problem_frame(problem, session_id=session_id))
