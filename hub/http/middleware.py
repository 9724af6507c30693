"""The two ASGI layers around Connexion.

``EdgeMiddleware`` (outermost): request id, body-size limit before any parsing, one JSON
access-log line and the HTTP metrics per request, a problem for anything that escapes.

``PolicyMiddleware`` (in place of Connexion's security layer, after routing): API-key auth
and roles, the per-key rate limit, ``X-Confirm`` on destructive operations,
``Idempotency-Key`` replay, and the audit entry for every mutating request.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db import base as db_base
from db.base import new_id
from hub.core import metrics, spec
from hub.core.problems import (
    BadRequest,
    ConfirmationRequired,
    Conflict,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    PayloadTooLarge,
    Problem,
    RateLimited,
    Unauthorized,
)
from hub.core.problems import render as render_problem
from hub.http.ratelimit import RateLimiter
from hub.runtime.instance import Runtime
from hub.services import audit, auth, idempotency

access_log = logging.getLogger("aether.access")
error_log = logging.getLogger("aether.error")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
UPLOAD_TYPES = ("multipart/form-data", "application/gzip", "application/x-gzip")
REPLAY_HEADERS = ("content-type", "location", "etag")


def request_info(scope: Scope) -> dict:
    return scope.setdefault("aether", {"request_id": "", "principal": None, "operation": None})


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


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

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
                    await self.app(scope, _replay(body, receive), send_with_id)
            else:
                await self.app(scope, self._limited(receive, limit), send_with_id)
        except Exception as exc:
            error_log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
            if not response_started:
                await send_problem(
                    send_with_id, InternalError("Unexpected error."), request_id, scope["path"]
                )
        finally:
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


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields ``body`` once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class PolicyMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime, rate_limiter: RateLimiter) -> None:
        self.app = app
        self.runtime = runtime
        self.rate_limiter = rate_limiter
        self.policies = spec.policies()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        policy = self.policies.get(routing.get("operation_id") or "")
        if policy is None:
            await self.app(scope, receive, send)
            return
        info = request_info(scope)
        info["operation"] = policy.operation_id
        resolved = spec.resolve_path(scope["path"]) if "{" in policy.path else None
        if resolved is not None and resolved[0] != policy.path:
            # Routed to a template (`/agents/{agent_id}`) although a literal path of the spec
            # (`/agents/seed`) owns this URL and lacks the method.
            allowed = ", ".join(sorted(resolved[1]))
            raise MethodNotAllowed(
                f"{scope['method']} is not allowed on {scope['path']}; allowed: {allowed}.",
                headers={"Allow": allowed},
            )
        if scope["method"] not in MUTATING:
            await self._guard(scope, policy, info)
            await self.app(scope, receive, send)
            return

        status = 500
        recorded = False

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guard(scope, policy, info)
            key = Headers(scope=scope).get("idempotency-key")
            if policy.idempotent_create and key and info["principal"] is not None:
                await self._idempotent(scope, receive, capture, key, info)
            else:
                await self.app(scope, receive, capture)
        except Exception as exc:
            await self._audit(scope, info, status_of(exc))
            recorded = True
            raise
        finally:
            if not recorded:
                await self._audit(scope, info, status)

    async def _guard(self, scope: Scope, policy: spec.OperationPolicy, info: dict) -> None:
        settings = self.runtime.settings
        needs_key = policy.role != "public" or (
            policy.public_setting is not None and not getattr(settings, policy.public_setting)
        )
        if not needs_key:
            return
        headers = Headers(scope=scope)
        secret = auth.credential_from_headers(
            headers.get("authorization"), headers.get("x-api-key")
        )
        if secret is None:
            raise Unauthorized("No API key: send `Authorization: Bearer <key>` or `X-API-Key`.")
        if db_base.is_postgres():
            found = await run_in_threadpool(auth.lookup, secret, settings.admin_token)
        else:
            # One indexed read on a local WAL file (readers never wait for writers) costs
            # less than the hop to a worker thread.
            found = auth.lookup(secret, settings.admin_token)
        if found is None:
            raise Unauthorized("The API key is not valid or has been revoked.")
        principal, used_long_ago = found
        if used_long_ago:  # at most once a minute per key: a write, so off the event loop
            await run_in_threadpool(auth.record_use, principal.key_id)
        info["principal"] = principal
        required = "viewer" if policy.role == "public" else policy.role
        if not principal.allows(required):
            raise Forbidden(
                f"This operation needs the {required!r} role; the key has {principal.role!r}.",
                code="role_too_low",
            )
        wait = self.rate_limiter.check(principal.key_id, settings.rate_limit_per_minute)
        if wait:
            metrics.RATE_LIMITED.inc()
            retry_after = max(1, int(wait + 0.999))
            raise RateLimited(
                f"Rate limit of {settings.rate_limit_per_minute} requests per minute reached.",
                headers={"Retry-After": str(retry_after)},
            )
        if policy.confirm and headers.get("x-confirm", "").lower() != "yes":
            raise ConfirmationRequired(
                "This action is destructive: repeat it with the header `X-Confirm: yes`."
            )

    async def _audit(self, scope: Scope, info: dict, status: int) -> None:
        principal = info.get("principal")
        operator = Headers(scope=scope).get("x-operator")
        if operator is not None:
            operator = "".join(ch for ch in operator if ch.isprintable())[:200] or None
        await run_in_threadpool(
            audit.record,
            actor_key_id=principal.key_id if principal else None,
            actor_name=principal.name if principal else None,
            operator=operator,
            operation_id=info.get("operation"),
            method=scope["method"],
            resource=scope["path"][:2000],
            status=status,
            request_id=info["request_id"],
        )
        metrics.AUDIT_ENTRIES.inc()

    async def _idempotent(
        self, scope: Scope, receive: Receive, send: Send, key: str, info: dict
    ) -> None:
        """Replay the stored answer for a repeated key, or run once and store a 2xx answer."""
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        actor = info["principal"].key_id
        request_hash = hashlib.sha256(
            scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + body
        ).hexdigest()
        record = await run_in_threadpool(
            idempotency.claim, actor, key, info["operation"], request_hash
        )
        if record is not None:
            if record.request_hash != request_hash:
                raise Conflict(
                    "This Idempotency-Key was used with a different request.",
                    code="idempotency_key_reused",
                )
            if record.status is None:
                raise Conflict(
                    "A request with this Idempotency-Key is still being processed.",
                    code="idempotency_in_progress",
                )
            headers = [(k.encode(), v.encode()) for k, v in record.headers.items()]
            headers.append((b"idempotent-replayed", b"true"))
            await send({"type": "http.response.start", "status": record.status, "headers": headers})
            await send({"type": "http.response.body", "body": record.body.encode()})
            return

        captured: dict = {"status": 500, "headers": {}, "body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = {
                    k.decode().lower(): v.decode()
                    for k, v in message.get("headers", [])
                    if k.decode().lower() in REPLAY_HEADERS
                }
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, _replay(body, receive), capture)
        finally:
            await run_in_threadpool(idempotency.settle, actor, key, captured)
