"""``create_app(settings)``: the one ASGI callable the hub serves.

HTTP goes through ``EdgeMiddleware`` to a Connexion ``AsyncApp`` built from openapi.yaml
(routing → policy → validation → ``handlers.<tag>.<operationId>``); WebSocket scopes go to a
small Starlette router beside it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
from functools import partial

import connexion.frameworks.starlette as connexion_starlette
from connexion import AsyncApp
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.operations import OpenAPIOperation
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolver
from connexion.spec import OpenAPISpecification
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from db import base as db_base
from db import providers as db_providers
from hub import errors, logs, spec, state, ws
from hub.middleware import EdgeMiddleware, PolicyMiddleware
from hub.problems import PROBLEM_JSON
from hub.runtime import Runtime
from hub.services import keys, memory, providers
from hub.settings import Settings
from hub.validation import validator_map

log = logging.getLogger("aether.app")

# Route every path parameter as a plain string and let validation type it: Connexion's typed
# route converters turn `/versions/abc/promote` into a 404 instead of a 400 naming the field.
connexion_starlette.PATH_PARAMETER_CONVERTERS = {"path": "path"}

# Handlers only ever produce the success media type; problem+json comes from the error
# handlers. Without this, an operation that declares both makes Connexion refuse every plain
# dict a handler returns ("Multiple response content types"), and a 204 would be labelled a
# problem.
OpenAPIOperation.produces = property(lambda self: [t for t in self._produces if t != PROBLEM_JSON])


# Connexion validates the whole document against the OpenAPI meta-schema each time an app is
# built (~0.2 s). `make check` validates it too; within a process, validate a document once.
_validate_spec = OpenAPISpecification._validate_spec.__func__
_validated: set[str] = set()


def _validate_spec_once(cls, raw_spec) -> None:
    fingerprint = hashlib.sha256(json.dumps(raw_spec, sort_keys=True).encode()).hexdigest()
    if fingerprint not in _validated:
        _validate_spec(cls, raw_spec)
        _validated.add(fingerprint)


OpenAPISpecification._validate_spec = classmethod(_validate_spec_once)


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
    for middleware in ConnexionMiddleware.default_middlewares:
        if middleware is SecurityMiddleware:
            stack.append(partial(PolicyMiddleware, runtime=runtime))
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
    state.set_runtime(runtime)
    runtime.providers = providers.new_registry()
    loaded = [providers.load(runtime.providers, settings)]

    def reload_providers() -> None:  # another instance may have changed the stored set
        if db_providers.signature() != loaded[0]:
            loaded[0] = providers.load(runtime.providers, settings)

    runtime.on_beat.append(reload_providers)
    runtime.on_beat.append(memory.sweep)  # expired memories: invisible at once, deleted here
    runtime.on_beat.append(runtime.sweep_events)  # event retention (age and count)
    return runtime


def create_app(settings: Settings | None = None) -> Hub:
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
