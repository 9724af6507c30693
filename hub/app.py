"""``create_app(settings)``: the one ASGI callable the hub serves.

HTTP goes through ``EdgeMiddleware`` to a Connexion ``AsyncApp`` built from openapi.yaml
(routing → policy → validation → ``handlers.<tag>.<operationId>``); WebSocket scopes go to a
small Starlette router beside it.
"""

from __future__ import annotations

import functools
import logging

from connexion import AsyncApp
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from db import base as db_base
from db import providers as db_providers
from hub.core import logs, programs, spec
from hub.http import connexion_fixes, errors
from hub.http import websocket as ws
from hub.http.edge import EdgeMiddleware
from hub.http.policy import PolicyMiddleware
from hub.http.ratelimit import RateLimiter
from hub.http.validation import validator_map
from hub.runtime import instance
from hub.runtime.instance import Runtime
from hub.services import audit, keys, memory, providers
from hub.settings import Settings

log = logging.getLogger("aether.app")


class TagResolver(Resolver):
    """operationId ``list_agents`` with tag ``agents`` → ``handlers.agents.list_agents``."""

    def resolve_operation_id(self, operation) -> str:
        tag = operation._operation["tags"][0]
        return f"handlers.{tag}.{operation.operation_id}"


class Hub:
    """The ASGI entry point of one hub: lifespan starts and stops its runtime, WebSockets go
    to the Starlette router, HTTP to the edge middleware and the Connexion app."""

    def __init__(
        self, http: ASGIApp, websocket: Router, runtime: Runtime, rate_limiter: RateLimiter
    ) -> None:
        self.http = http
        self.websocket = websocket
        self.runtime = runtime
        self.rate_limiter = rate_limiter  # shared by HTTP and WebSocket frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope.setdefault("aether", {})["rate_limiter"] = self.rate_limiter
            await self.websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol: start the runtime, and stop it at shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    log.exception("the hub could not start")
                    await self.runtime.stop()
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.runtime.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def _middlewares(validate_responses: bool) -> list:
    stack = []
    for middleware in ConnexionMiddleware.default_middlewares:
        if middleware is SecurityMiddleware:
            stack.append(PolicyMiddleware)
        elif middleware is ResponseValidationMiddleware and not validate_responses:
            continue
        else:
            stack.append(middleware)
    assert RequestValidationMiddleware in stack
    return stack


@functools.cache
def connexion_app(validate_responses: bool) -> AsyncApp:
    """The Connexion app built from openapi.yaml: routing, policy, validation, handlers.

    It holds nothing of one hub (the edge puts the hub's runtime and rate limiter into each
    request's scope), so a process builds it once per shape and every hub it creates shares
    it.
    """
    connexion_fixes.apply()
    app = AsyncApp(
        __name__,
        specification_dir=str(spec.SPEC_PATH.parent),
        middlewares=_middlewares(validate_responses),
        swagger_ui_options=SwaggerUIOptions(
            # The contract serves itself (get_openapi_json, get_openapi_yaml): Connexion's copy
            # inlines every $ref (generators then make thousands of models) and rewrites
            # `servers` to its base path ("" for "/", an empty Servers list in Swagger UI).
            serve_spec=False,
            spec_path="/api/v1/openapi.json",  # what Swagger UI loads
            swagger_ui_path="/api/v1/ui",
            swagger_ui_config={"persistAuthorization": True, "displayOperationId": True},
        ),
    )
    app.add_api(
        spec.load(),  # never changed: Connexion works on its own copy (connexion_fixes)
        resolver=TagResolver(),
        validate_responses=validate_responses,
        validator_map=validator_map(),
        strict_validation=True,
    )
    errors.register(app)
    # Build the middleware stack now, at start-up, not in the first request (~40 ms).
    # (ConnexionMiddleware builds it lazily in __call__; this is that same call, made early.)
    middleware = app.middleware
    middleware.app, middleware.middleware_stack = middleware._build_middleware_stack()
    return app


def prepare_database(settings: Settings) -> None:
    """Open the database and apply pending migrations."""
    db_base.open_database(settings.effective_database_url)
    applied = db_base.migrate()
    if applied:
        log.info("migrations applied", extra={"applied": applied})


def build_runtime(settings: Settings) -> Runtime:
    """Open the database, register this process as an instance, load the providers."""
    logs.configure(settings.log_level)
    prepare_database(settings)
    programs.refuse_when(db_base.in_write_transaction, "inside a write transaction")
    runtime = Runtime(settings)
    runtime.register()
    instance.install(runtime)
    audit.rekey_legacy()  # entries from before the chain was keyed, once
    registry = providers.new_registry()
    providers.install_registry(registry)
    loaded = [providers.load(registry, settings)]

    def reload_providers() -> None:  # another instance may have changed the stored set
        if db_providers.signature() != loaded[0]:
            loaded[0] = providers.load(registry, settings)

    runtime.on_beat.append(reload_providers)
    runtime.on_beat.append(memory.sweep)  # expired memories: invisible at once, deleted here
    runtime.on_beat.append(runtime.sweep_events)  # event retention (age and count)
    return runtime


def create_app(settings: Settings | None = None) -> Hub:
    connexion_fixes.apply()
    settings = settings or Settings.from_env()
    runtime = build_runtime(settings)
    runtime.bootstrap_secret = keys.ensure_bootstrap_key(settings.admin_token)

    app = connexion_app(settings.response_validation)
    rate_limiter = RateLimiter()
    http: ASGIApp = EdgeMiddleware(app, runtime, rate_limiter)
    if settings.cors_origins:
        http = CORSMiddleware(
            http,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "Location", "X-Request-Id", "Retry-After"],
        )
    websocket = Router(routes=[WebSocketRoute("/api/v1/ws", ws.endpoint)])
    return Hub(http, websocket, runtime, rate_limiter)
