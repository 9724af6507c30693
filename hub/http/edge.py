"""The outermost ASGI layer: request id, body-size limit before any parsing, one JSON
access-log line and the HTTP metrics per request, a problem for anything that escapes.

The policy layer inside Connexion is ``hub.http.policy``.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db import base as db_base
from db.base import new_id
from hub.core import metrics
from hub.core.problems import (
    BadRequest,
    InternalError,
    PayloadTooLarge,
    Problem,
)
from hub.core.problems import render as render_problem
from hub.http.ratelimit import RateLimiter
from hub.runtime.instance import Runtime
from hub.services import audit, auth

access_log = logging.getLogger("aether.access")
error_log = logging.getLogger("aether.error")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
UPLOAD_TYPES = ("multipart/form-data", "application/gzip", "application/x-gzip")
REPLAY_HEADERS = ("content-type", "location", "etag")


def request_info(scope: Scope) -> dict:
    return scope.setdefault("aether", {"request_id": "", "principal": None, "operation": None})


def operator_of(scope: Scope) -> str | None:
    """The ``X-Operator`` header, printable and at most 200 characters, for the audit."""
    operator = Headers(scope=scope).get("x-operator")
    if operator is None:
        return None
    return "".join(ch for ch in operator if ch.isprintable())[:200] or None


async def find_key(secret: str, admin_token: str) -> tuple[auth.Principal, bool] | None:
    """``auth.lookup`` from the event loop: on PostgreSQL in a worker thread; on SQLite inline
    (one indexed read on a local WAL file, where readers never wait for writers, costs less
    than the hop to a thread)."""
    if db_base.is_postgres():
        return await run_in_threadpool(auth.lookup, secret, admin_token)
    return auth.lookup(secret, admin_token)


def status_of(exc: BaseException) -> int:
    for attr in ("status", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return 500


async def send_problem(send: Send, problem: Problem, request_id: str, path: str) -> None:
    body, media_type = render_problem(problem, request_id, path)
    headers = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in problem.headers.items()),
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields ``body`` once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime, rate_limiter: RateLimiter) -> None:
        self.app = app
        self.runtime = runtime
        self.rate_limiter = rate_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.match(given) else new_id("req")
        info = request_info(scope)
        info["request_id"] = request_id
        info["runtime"], info["rate_limiter"] = self.runtime, self.rate_limiter
        rid_header = (b"x-request-id", request_id.encode())
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        self.runtime.in_flight += 1
        metrics.HTTP_IN_FLIGHT.inc()
        try:
            limit = self._limit_for(headers)
            declared = headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                problem = (
                    PayloadTooLarge(f"The body is over the limit of {limit} bytes.")
                    if declared.isdigit()
                    else BadRequest("Content-Length is not a number.")
                )
                await send_problem(send_with_id, problem, request_id, scope["path"])
            elif declared is None and "transfer-encoding" in headers:
                # A chunked body: buffer it (within the limit) and give it a Content-Length,
                # which Connexion needs to see a body at all.
                body = await self._read_chunked(receive, limit)
                if body is None:
                    problem = PayloadTooLarge(f"The body is over the limit of {limit} bytes.")
                    await send_problem(send_with_id, problem, request_id, scope["path"])
                else:
                    scope["headers"] = [
                        *(h for h in scope["headers"] if h[0] != b"transfer-encoding"),
                        (b"content-length", str(len(body)).encode()),
                    ]
                    await self.app(scope, replay_body(body, receive), send_with_id)
            else:
                await self.app(scope, self._limited(receive, limit), send_with_id)
        except Exception as exc:
            error_log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
            if not response_started:
                await send_problem(
                    send_with_id, InternalError("Unexpected error."), request_id, scope["path"]
                )
        finally:
            if scope["method"] in MUTATING and not info.get("audited"):
                await self._audit_unrouted(scope, info, status)
            self.runtime.in_flight -= 1
            metrics.HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            operation = info.get("operation") or "unknown"
            metrics.observe_request(operation, scope["method"], status, elapsed)
            principal = info.get("principal")
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "operation_id": operation,
                    "actor": principal.key_id if principal else None,
                },
            )

    async def _audit_unrouted(self, scope: Scope, info: dict, status: int) -> None:
        """A mutating request answered before the policy layer saw it (413, an unknown path,
        405, a redirect): one audit entry, without the body, when it carries a valid key;
        counted in metrics, not audited, when it does not (as the policy layer does)."""
        if info.get("refused_anonymous"):
            return  # refused by the policy layer for want of a credential: counted there
        headers = Headers(scope=scope)
        secret = auth.credential_from_headers(
            headers.get("authorization"), headers.get("x-api-key")
        )
        try:
            found = None
            if secret is not None:
                found = await find_key(secret, self.runtime.settings.admin_token)
            if found is None:
                reason = "missing" if secret is None else "invalid"
                metrics.UNAUTHENTICATED.labels(reason=reason).inc()
                return
            principal = found[0]
            await run_in_threadpool(
                audit.record,
                actor_key_id=principal.key_id,
                actor_name=principal.name,
                operator=operator_of(scope),
                operation_id=info.get("operation"),
                method=scope["method"],
                resource=scope["path"],
                status=status,
                request_id=info["request_id"],
            )
        except Exception as exc:  # the answer is sent; the database may be what failed
            error_log.error(
                "could not audit a refused request",
                exc_info=exc,
                extra={"request_id": info["request_id"]},
            )

    def _limit_for(self, headers: Headers) -> int:
        content_type = headers.get("content-type", "").lower()
        if content_type.startswith(UPLOAD_TYPES):
            return self.runtime.settings.upload_limit
        return self.runtime.settings.body_limit

    @staticmethod
    async def _read_chunked(receive: Receive, limit: int) -> bytes | None:
        """The whole body, or None as soon as it passes ``limit``."""
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > limit:
                return None
            more = message.get("more_body", False)
        return bytes(body)

    @staticmethod
    def _limited(receive: Receive, limit: int) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"The body is over the limit of {limit} bytes.")
            return message

        return wrapped
