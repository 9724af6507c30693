"""The policy layer, in place of Connexion's security layer (after routing): API-key auth
and roles, the per-key rate limit, ``X-Confirm`` on destructive operations,
``Idempotency-Key`` replay, and the audit entry for every mutating request.

The policies themselves (role, confirmation, public settings) are declared once per
operation in openapi.yaml (``x-aether-role``, ``x-aether-confirm``) and read by
``hub.core.spec.policies()``.
"""

from __future__ import annotations

import hashlib
import re

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.core import metrics, spec
from hub.core.problems import (
    ConfirmationRequired,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from hub.http.edge import (
    MUTATING,
    REPLAY_HEADERS,
    find_key,
    operator_of,
    replay_body,
    request_info,
    status_of,
)
from hub.services import audit, auth, idempotency

IDEMPOTENCY_KEY = re.compile(r"^[!-~]{1,255}$")  # the contract's IdempotencyKey parameter


def _require_content_type(scope: Scope, policy: spec.OperationPolicy) -> None:
    """A body sent without ``Content-Type`` is a 415 naming what the operation takes (the
    request validator would skip it and hand the handler raw bytes)."""
    if not policy.body_media_types:
        return
    headers = Headers(scope=scope)
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if has_body and not headers.get("content-type"):
        raise UnsupportedMediaType(
            "The body needs a Content-Type: " + " or ".join(policy.body_media_types) + "."
        )
    content_type = headers.get("content-type", "").lower()
    if content_type.startswith("multipart/") and "boundary=" not in content_type:
        # Starlette's form parser fails on it with an error that would be a 500
        raise UnsupportedMediaType("A multipart body needs a boundary in its Content-Type.")


class PolicyMiddleware:
    """Built once per process with the Connexion app; the hub a request belongs to (its
    runtime and rate limiter) comes with the request, set by ``EdgeMiddleware``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
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
                if status == 201:  # the audit names what was created, not the collection
                    for name, value in message.get("headers", []):
                        if name.lower() == b"location":
                            info["created"] = value.decode("latin-1")
            await send(message)

        try:
            await self._guard(scope, policy, info)
            _require_content_type(scope, policy)
            key = Headers(scope=scope).get("idempotency-key")
            if policy.idempotent_create and key and info["principal"] is not None:
                await self._idempotent(scope, receive, capture, key, info, policy)
            else:
                self._begin_audit(scope, info, policy)
                await self.app(scope, receive, capture)
        except Unauthorized as exc:
            # No principal: counted, not audited (a flood must not write a row a request);
            # a failed webhook signature is charged to the client's address like a bad key.
            recorded = True
            if info.get("principal") is None:
                if exc.code == "invalid_signature":
                    self._refused_anonymous(scope, info, "signature")
                raise
            await self._audit(scope, info, status_of(exc))
            raise
        except Exception as exc:
            recorded = True
            if not info.get("refused_anonymous"):  # a 429 instead of a 401: not audited either
                await self._audit(scope, info, status_of(exc))
            raise
        finally:
            if not recorded:
                await self._audit(scope, info, status)

    async def _guard(self, scope: Scope, policy: spec.OperationPolicy, info: dict) -> None:
        settings = info["runtime"].settings
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
            self._refused_anonymous(scope, info, "missing")
            raise Unauthorized("No API key: send `Authorization: Bearer <key>` or `X-API-Key`.")
        if secret == auth.CONFLICTING:
            self._refused_anonymous(scope, info, "invalid")
            raise Unauthorized(
                "`Authorization` and `X-API-Key` carry different credentials: send one."
            )
        found = await find_key(secret, settings.admin_token)
        if found is None:
            self._refused_anonymous(scope, info, "invalid")
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
        wait = info["rate_limiter"].check(principal.key_id, settings.rate_limit_per_minute)
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

    def _refused_anonymous(self, scope: Scope, info: dict, reason: str) -> None:
        """A request refused for want of a valid credential: counted in metrics (never an
        audit row), and charged to the client's address; past that address's limit
        (``AETHER_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE``) the answer is 429, not 401."""
        metrics.UNAUTHENTICATED.labels(reason=reason).inc()
        info["refused_anonymous"] = True
        settings = info["runtime"].settings
        client = scope.get("client")
        address = client[0] if client else "unknown"
        per_minute = settings.unauthenticated_rate_limit_per_minute
        wait = info["rate_limiter"].check(f"address:{address}", per_minute)
        if wait:
            metrics.RATE_LIMITED.inc()
            raise RateLimited(
                f"Too many requests without a valid credential from {address}: "
                f"{per_minute} per minute.",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )

    def _begin_audit(self, scope: Scope, info: dict, policy: spec.OperationPolicy) -> None:
        """From here on the request may change something: its entry is written by the first
        write transaction that commits, inside it (``hub.services.audit.Pending``)."""
        info["audit"] = audit.begin(audit.Pending(**self._entry(scope, info, policy)))

    async def _audit(self, scope: Scope, info: dict, status: int) -> None:
        """The request has answered: its entry, unless a committed change wrote it."""
        info["audited"] = True
        token = info.pop("audit", None)
        pending = audit.end(token) if token is not None else None
        if pending is None:
            pending = audit.Pending(**self._entry(scope, info, None))
        await run_in_threadpool(audit.finish, pending, status, info.get("created"))

    @staticmethod
    def _entry(scope: Scope, info: dict, policy: spec.OperationPolicy | None) -> dict:
        principal = info.get("principal")
        return {
            "actor_key_id": principal.key_id if principal else None,
            "actor_name": principal.name if principal else None,
            "operator": operator_of(scope),
            "operation_id": info.get("operation"),
            "method": scope["method"],
            "path": scope["path"],
            "status": policy.success_status if policy else 500,
            "names_created": policy.names_created if policy else False,
            "request_id": info["request_id"],
        }

    async def _idempotent(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: str,
        info: dict,
        policy: spec.OperationPolicy,
    ) -> None:
        """Replay the stored answer for a repeated key, or run once and store a 2xx answer."""
        if not IDEMPOTENCY_KEY.match(key):  # checked here: it is stored before validation runs
            message = "1 to 255 printable ASCII characters, no spaces"
            raise ValidationFailed(
                f"header.Idempotency-Key: {message}.",
                errors=[{"field": "header.Idempotency-Key", "message": message}],
            )
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

        self._begin_audit(scope, info, policy)
        try:
            await self.app(scope, replay_body(body, receive), capture)
        finally:
            audit.close()  # the record below is bookkeeping, not the change the entry is for
            await run_in_threadpool(idempotency.settle, actor, key, captured, policy.secret_fields)
