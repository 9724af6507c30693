"""``create_app(settings)``: the one ASGI callable the hub serves.

HTTP goes through ``EdgeMiddleware`` to a Connexion ``AsyncApp`` built from openapi.yaml
(routing → policy → validation → ``handlers.<tag>.<operationId>``); WebSocket scopes go to a
small Starlette router beside it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from functools import partial

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
from hub.core import logs, spec
from hub.http import connexion_fixes, errors
from hub.http import websocket as ws
from hub.http.edge import EdgeMiddleware
from hub.http.policy import PolicyMiddleware
from hub.http.ratelimit import RateLimiter
from hub.http.validation import validator_map
from hub.runtime import instance
from hub.runtime.instance import Runtime
from hub.services import keys, memory, providers
from hub.settings import Settings

log = logging.getLogger("aether.app")


class TagResolver(Resolver):
    """operationId ``list_agents`` with tag ``agents`` → ``handlers.agents.list_agents``."""

    def resolve_operation_id(self, operation) -> str:
        tag = operation._operation["tags"][0]
        return f"handlers.{tag}.{operation.operation_id}"


class Hub:
    """The ASGI entry point: WebSockets to the Starlette router, the rest to HTTP."""

    def __init__(self, http: ASGIApp, websocket: Router, runtime: Runtime) -> None:
        self.http = http
        self.websocket = websocket
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        else:
            await self.http(scope, receive, send)


def _middlewares(runtime: Runtime, validate_responses: bool) -> list:
    stack = []
    limiter = RateLimiter()  # per key, shared by every request of this app
    for middleware in ConnexionMiddleware.default_middlewares:
        if middleware is SecurityMiddleware:
            stack.append(partial(PolicyMiddleware, runtime=runtime, rate_limiter=limiter))
        elif middleware is ResponseValidationMiddleware and not validate_responses:
            continue
        else:
            stack.append(middleware)
    assert RequestValidationMiddleware in stack
    return stack


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
    runtime = Runtime(settings)
    runtime.register()
    instance.install(runtime)
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

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = AsyncApp(
        __name__,
        specification_dir=str(spec.SPEC_PATH.parent),
        lifespan=lifespan,
        middlewares=_middlewares(runtime, settings.response_validation),
        swagger_ui_options=SwaggerUIOptions(
            spec_path="/api/v1/openapi.json",
            swagger_ui_path="/api/v1/ui",
            swagger_ui_config={"persistAuthorization": True, "displayOperationId": True},
        ),
    )
    app.add_api(
        copy.deepcopy(spec.load()),
        resolver=TagResolver(),
        validate_responses=settings.response_validation,
        validator_map=validator_map(),
        strict_validation=True,
    )
    errors.register(app)
    http: ASGIApp = EdgeMiddleware(app, runtime)
    if settings.cors_origins:
        http = CORSMiddleware(
            http,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "Location", "X-Request-Id", "Retry-After"],
        )
    return Hub(http, Router(routes=[WebSocketRoute("/api/v1/ws", ws.endpoint)]), runtime)
