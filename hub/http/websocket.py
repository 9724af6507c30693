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

**The same rules as HTTP.** Every frame counts against the key's rate limit (an ``error``
frame with status 429 and ``retry_after`` past it); a frame over ``AETHER_BODY_LIMIT`` is
refused (413); a chat frame's ``content`` is validated against ``MessageCreate`` (400 naming
the field: length, NUL); every chat frame is audited like its HTTP twin ``send_message``
(method ``WS``, the session's messages path, the outcome's status). A revoked key closes the
connection (``hub.core.access``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from jsonschema import Draft4Validator
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from db.base import new_id
from hub.core import access, generations, metrics, spec
from hub.core.problems import (
    Forbidden,
    PayloadTooLarge,
    Problem,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from hub.engine import turns as chat
from hub.events.bus import Overflow, Revoked
from hub.http import validation
from hub.http.edge import find_key
from hub.runtime import instance
from hub.services import audit, auth

log = logging.getLogger("aether.ws")
POLICY_VIOLATION = 1008


_SEND_MESSAGE = next(p for p in spec.policies().values() if p.operation_id == "send_message")
_MESSAGE_CREATE = Draft4Validator(spec.load()["components"]["schemas"]["MessageCreate"])
_CONTENT_RULES = {  # MessageCreate.content's rules, said without echoing the content
    "minLength": "must not be empty",
    "maxLength": "longer than the contract's maxLength",
    "pattern": "must not contain NUL characters",
    "type": "must be a string",
}


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
    found = await find_key(secret, runtime.settings.admin_token)
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
    loop = asyncio.get_running_loop()
    held = access.watch.hold(
        principal.key_id,
        lambda: loop.call_soon_threadsafe(lambda: loop.create_task(_close_revoked(websocket))),
    )
    limiter = websocket.scope.get("aether", {}).get("rate_limiter")
    try:
        while True:
            raw = await websocket.receive_text()
            settings = runtime.settings
            if len(raw) > settings.body_limit:
                limit = settings.body_limit
                too_large = PayloadTooLarge(f"The frame is over the limit of {limit} bytes.")
                await websocket.send_json(_problem_frame(too_large))
                continue
            wait = limiter.check(principal.key_id, settings.rate_limit_per_minute) if limiter else 0
            if wait:
                metrics.RATE_LIMITED.inc()
                per_minute = settings.rate_limit_per_minute
                limited = RateLimited(
                    f"Rate limit of {per_minute} requests per minute reached.",
                    retry_after=max(1, int(wait + 0.999)),
                )
                await websocket.send_json(_problem_frame(limited))
                continue
            try:
                frame = validation.parse_json(raw)
            except Problem as problem:
                refused = (
                    _error("malformed_frame", "A frame must be JSON.")
                    if problem.code == "malformed_json"
                    else _problem_frame(problem)
                )
                await websocket.send_json(refused)
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
        access.watch.release(held)
        if forwarder is not None:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder
        runtime.websocket_clients -= 1
        metrics.WS_CLIENTS.dec()


async def _close_revoked(websocket: WebSocket) -> None:
    """The key was revoked: say so, then close (policy violation)."""
    with contextlib.suppress(Exception):  # the client may be gone already
        revoked = Unauthorized(
            "The API key of this connection was revoked; it closes.", code="api_key_revoked"
        )
        await websocket.send_json(_problem_frame(revoked))
        await websocket.close(code=POLICY_VIOLATION, reason="the API key was revoked")


async def _forward(websocket: WebSocket, bus, types: tuple[str, ...], last_event_id) -> None:
    """Send the subscribed events until the subscription is replaced or the client leaves.
    (The connection holds its key in ``hub.core.access``: a revoked key closes it whole.)"""
    try:
        async for item in bus.follow(types, last_event_id):
            if item is None:
                continue  # WebSocket pings keep the connection alive
            if isinstance(item, Overflow):
                await websocket.send_json({"type": "overflow", "last_event_id": item.last_event_id})
                return
            if isinstance(item, Revoked):  # not asked for here (the connection closes whole)
                return
            await websocket.send_json({"type": "event", "event": item})
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left


async def _chat(websocket: WebSocket, principal: auth.Principal, frame: dict) -> None:
    """One chat frame, audited like ``send_message``: the entry commits with the user's
    message (``hub.services.audit.Pending``), or is written after a refused frame."""
    session_id = frame.get("session_id")
    status = 500
    pending = audit.Pending(
        actor_key_id=principal.key_id,
        actor_name=principal.name,
        operator=None,
        operation_id="send_message",
        method="WS",
        path=f"/api/v1/sessions/{session_id}/messages"
        if isinstance(session_id, str)
        else "/api/v1/ws",
        status=_SEND_MESSAGE.success_status,
        request_id=new_id("req"),
    )
    token = audit.begin(pending)
    try:
        status = await _chat_turn(websocket, principal, frame)
    finally:
        audit.end(token)
        await run_in_threadpool(audit.finish, pending, status)


async def _chat_turn(websocket: WebSocket, principal: auth.Principal, frame: dict) -> int:
    """One chat frame; the status its HTTP twin would have answered (for the audit)."""
    session_id, content = frame.get("session_id"), frame.get("content")
    if not isinstance(session_id, str) or not isinstance(content, str):
        await websocket.send_json(
            _error("malformed_frame", "A chat frame needs `session_id` and `content` strings.")
        )
        return 400
    errors = list(_MESSAGE_CREATE.iter_errors({"content": content}))
    if errors:
        first = errors[0]
        message = _CONTENT_RULES.get(first.validator, "not a valid message")
        await websocket.send_json(
            _problem_frame(
                ValidationFailed(
                    f"content: {message}",
                    errors=[{"field": "content", "message": message}],
                ),
                session_id=session_id,
            )
        )
        return 400
    if not principal.allows("operator"):
        refused = Forbidden("Chatting needs the operator role.", code="role_too_low")
        await websocket.send_json(_problem_frame(refused))
        return 403

    async def sink(event: dict) -> None:
        await websocket.send_json({**event, "session_id": session_id})

    try:
        plan = await run_in_threadpool(chat.plan_turn, session_id, content=content)
    except Problem as problem:
        await websocket.send_json(_problem_frame(problem, session_id=session_id))
        return problem.status
    task = generations.current().spawn(chat.generate(plan, sink))
    try:
        await task
    except Problem as problem:
        await websocket.send_json(_problem_frame(problem, session_id=session_id))
        return problem.status
    return 200
