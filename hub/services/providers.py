"""The LLM providers this hub can call: built in, from the environment, or stored through the
API (API keys encrypted with a key derived from ``AETHER_SECRET_KEY``).

Each process keeps a registry (``registry()``); writes update it at once, and every
other process reloads at its next heartbeat when the stored set changed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from db import providers as db_providers
from db.base import utcnow, write_transaction
from db.pagination import sorted_page
from db.providers import ProviderConfig
from hub.core import crypto, metrics
from hub.core.problems import Conflict, NotFound, Problem, Unprocessable
from hub.llm import (
    BuiltinProvider,
    ChatMessage,
    CircuitBreaker,
    CompletionRequest,
    OpenAIProvider,
    ProviderRegistry,
    collect,
    create_provider,
)
from hub.services import audit, notifications, usage
from hub.services.etags import check_if_match
from hub.settings import Settings, current_settings

log = logging.getLogger("aether.providers")
BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}
ENV_PROVIDER = "openai"  # the id of the provider AETHER_OPENAI_BASE_URL defines


_registry: ProviderRegistry | None = None


def registry() -> ProviderRegistry:
    """This process's providers."""
    if _registry is None:
        raise RuntimeError("create_app() has not run in this process")
    return _registry


def install_registry(providers: ProviderRegistry) -> None:
    global _registry
    _registry = providers


def new_registry() -> ProviderRegistry:
    def breaker(provider_id: str) -> CircuitBreaker:
        def changed(_old: str, new: str) -> None:
            metrics.BREAKER_STATE.labels(provider_id).set(BREAKER_VALUE[new])
            if new == "open":
                _notify_breaker_open(provider_id)

        metrics.BREAKER_STATE.labels(provider_id).set(0)
        return CircuitBreaker(on_change=changed)

    registry = ProviderRegistry(breaker_factory=breaker)
    registry.register(BuiltinProvider())
    return registry


def _notify_breaker_open(provider_id: str) -> None:
    """A notification that calls to a provider are paused (written off the event loop)."""

    def write() -> None:
        try:
            notifications.create(
                kind="breaker_open",
                severity="critical",
                title=f"Provider {provider_id} is failing; calls are paused",
                message="Its circuit breaker opened after repeated failures; "
                "POST /api/v1/providers/{id}/reset closes it.",
                subject=provider_id,
            )
        except Exception:
            log.exception("could not record the breaker notification")

    try:
        asyncio.get_running_loop().run_in_executor(None, write)
    except RuntimeError:  # no event loop here: a worker thread already
        write()


def source_of(provider_id: str, settings: Settings) -> str:
    if provider_id == "builtin":
        return "builtin"
    if provider_id == ENV_PROVIDER and settings.openai_base_url:
        return "env"
    return "api"


def load(registry: ProviderRegistry, settings: Settings) -> tuple:
    """Register the environment's and the stored providers; returns the stored signature."""
    if settings.openai_base_url:
        registry.register(
            OpenAIProvider(
                ENV_PROVIDER,
                settings.openai_base_url,
                settings.openai_api_key or None,
                models=settings.openai_models,
            )
        )
    stored = {config.id for config in db_providers.all_configs()}
    for provider_id in list(registry.ids()):
        if source_of(provider_id, settings) == "api" and provider_id not in stored:
            registry.remove(provider_id)
    for config in db_providers.all_configs():
        if source_of(config.id, settings) != "api":
            continue
        key = None
        if config.api_key_encrypted:
            key = crypto.box().decrypt(config.api_key_encrypted)
        registry.register(_build(config, key))
    return db_providers.signature()


def _build(config: ProviderConfig, api_key: str | None):
    return create_provider(
        config.id,
        config.kind,
        base_url=config.base_url,
        api_key=api_key,
        models=config.models,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
    )


def view(provider_id: str) -> dict:
    guarded = registry().get(provider_id)
    inner = guarded.provider
    config = db_providers.get(provider_id)
    breaker = guarded.breaker
    opened = breaker.opened_at
    return {
        "id": provider_id,
        "kind": inner.kind,
        "source": source_of(provider_id, current_settings()),
        "base_url": getattr(inner, "base_url", None),
        "models": inner.models(),
        "has_api_key": bool(getattr(inner, "has_api_key", False)),
        "breaker": {
            "state": breaker.state,
            "consecutive_failures": breaker.consecutive_failures,
            "open_for_seconds": None if opened is None else round(time.monotonic() - opened, 3),
        },
        "version": config.version if config else 1,
    }


def views() -> list[dict]:
    return [view(provider_id) for provider_id in registry().ids()]


def page(*, limit: int, cursor: str | None) -> dict:
    """One page of the providers, by id."""
    return sorted_page(registry().ids(), view, limit=limit, cursor=cursor)


def etag(provider: dict) -> str:
    """A provider's ETag, from its view (the same form as every versioned row's)."""
    return f'"{provider["version"]}"'


def put(provider_id: str, body: dict, *, if_match: str | None) -> tuple[dict, bool]:
    """Create or replace a stored provider; ``api_key`` is write-only (absent: keep it)."""
    source = source_of(provider_id, current_settings())
    if source != "api":
        raise Conflict(
            f"Provider {provider_id!r} is defined by the {source} and cannot be changed here.",
            code="provider_read_only",
        )
    now = utcnow()
    with write_transaction():
        config = db_providers.get(provider_id)
        created = config is None
        if created:
            config = ProviderConfig(id=provider_id, created_at=now, version=0)
        else:
            check_if_match(if_match, config.etag)
        config.kind = body["kind"]
        config.base_url = body.get("base_url")
        config.models = body.get("models", [])
        config.connect_timeout = body.get("connect_timeout", 10.0)
        config.read_timeout = body.get("read_timeout", 120.0)
        if "api_key" in body:
            key = body["api_key"]
            config.api_key_encrypted = crypto.box().encrypt(key) if key else None
        plain_key = (
            crypto.box().decrypt(config.api_key_encrypted) if config.api_key_encrypted else None
        )
        provider = _build(config, plain_key)  # validates kind and base_url before storing
        config.version += 1
        config.updated_at = now
        config.save(force_insert=created)
        if created:
            audit.created("providers", provider_id)
    registry().register(provider)
    return view(provider_id), created


def delete(provider_id: str) -> None:
    if source_of(provider_id, current_settings()) != "api":
        raise Conflict(f"Provider {provider_id!r} cannot be deleted.", code="provider_read_only")
    with write_transaction():
        deleted = ProviderConfig.delete().where(ProviderConfig.id == provider_id).execute()
        if not deleted:  # inside: a transaction that commits is audited as the change
            raise NotFound(f"No provider with id {provider_id!r}.", code="provider_not_found")
    registry().remove(provider_id)


def reset(provider_id: str) -> dict:
    registry().reset(provider_id)
    return view(provider_id)


async def test(provider_id: str, model: str | None) -> dict:
    """One tiny call straight to the provider (its breaker neither blocks nor counts it)."""
    guarded = registry().get(provider_id)
    model = model or next(iter(guarded.models()), None)
    if model is None:
        raise Unprocessable(
            f"Provider {provider_id!r} lists no model: name one.", code="model_required"
        )
    request = CompletionRequest(
        model=model, messages=[ChatMessage(role="user", content="Say OK.")], max_tokens=5
    )
    started = time.perf_counter()
    result, error = None, None
    try:
        result = await collect(guarded.provider.stream(request))
    except Problem as problem:
        error = problem.to_dict(None)
    latency = round((time.perf_counter() - started) * 1000, 3)
    await asyncio.to_thread(
        usage.record,
        source="test",
        provider=provider_id,
        model=model,
        status="error" if error else "ok",
        prompt_tokens=result.usage.prompt_tokens if result else 0,
        completion_tokens=result.usage.completion_tokens if result else 0,
        latency_ms=latency,
    )
    return {
        "ok": error is None,
        "provider": provider_id,
        "model": model,
        "latency_ms": latency,
        "reply": result.content if result else None,
        "error": error,
    }
