"""The LLM providers this hub can call: built in, from the environment, or stored through the
API (API keys encrypted with a key derived from ``AETHER_SECRET_KEY``).

Each process keeps a registry (``runtime.providers``); writes update it at once, and every
other process reloads at its next heartbeat when the stored set changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from pathlib import Path

from db import providers as db_providers
from db.base import utcnow, write_transaction
from db.providers import ProviderConfig
from hub import metrics, state
from hub.crypto import SecretBox
from hub.problems import Conflict, NotFound, Problem, Unprocessable
from hub.providers import (
    BuiltinProvider,
    ChatMessage,
    CircuitBreaker,
    CompletionRequest,
    OpenAIProvider,
    ProviderRegistry,
    collect,
    create_provider,
)
from hub.services import usage
from hub.services.etags import check_if_match
from hub.settings import Settings

log = logging.getLogger("aether.providers")
BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}
ENV_PROVIDER = "openai"  # the id of the provider AETHER_OPENAI_BASE_URL defines


def secret_key(settings: Settings) -> str:
    """``AETHER_SECRET_KEY``, or a random key kept in the data folder (made once, mode 0600).

    Several machines sharing one PostgreSQL must set ``AETHER_SECRET_KEY`` to the same value.
    """
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        log.warning("generated a secret key for credential encryption", extra={"path": str(path)})
    return path.read_text().strip()


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
    from hub.services import notifications

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
    box = None
    stored = {config.id for config in db_providers.all_configs()}
    for provider_id in list(registry.ids()):
        if source_of(provider_id, settings) == "api" and provider_id not in stored:
            registry.remove(provider_id)
    for config in db_providers.all_configs():
        if source_of(config.id, settings) != "api":
            continue
        key = None
        if config.api_key_encrypted:
            box = box or SecretBox(secret_key(settings))
            key = box.decrypt(config.api_key_encrypted)
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
    runtime = state.runtime()
    guarded = runtime.providers.get(provider_id)
    inner = guarded.provider
    config = db_providers.get(provider_id)
    breaker = guarded.breaker
    opened = breaker.opened_at
    return {
        "id": provider_id,
        "kind": inner.kind,
        "source": source_of(provider_id, runtime.settings),
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
    return [view(provider_id) for provider_id in state.runtime().providers.ids()]


def put(provider_id: str, body: dict, *, if_match: str | None) -> tuple[dict, bool]:
    """Create or replace a stored provider; ``api_key`` is write-only (absent: keep it)."""
    runtime = state.runtime()
    if source_of(provider_id, runtime.settings) != "api":
        raise Conflict(
            f"Provider {provider_id!r} is defined by the {source_of(provider_id, runtime.settings)}"
            " and cannot be changed here.",
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
            config.api_key_encrypted = (
                SecretBox(secret_key(runtime.settings)).encrypt(key) if key else None
            )
        plain_key = (
            SecretBox(secret_key(runtime.settings)).decrypt(config.api_key_encrypted)
            if config.api_key_encrypted
            else None
        )
        provider = _build(config, plain_key)  # validates kind and base_url before storing
        config.version += 1
        config.updated_at = now
        config.save(force_insert=created)
    runtime.providers.register(provider)
    return view(provider_id), created


def delete(provider_id: str) -> None:
    runtime = state.runtime()
    if source_of(provider_id, runtime.settings) != "api":
        raise Conflict(f"Provider {provider_id!r} cannot be deleted.", code="provider_read_only")
    with write_transaction():
        deleted = ProviderConfig.delete().where(ProviderConfig.id == provider_id).execute()
    if not deleted:
        raise NotFound(f"No provider with id {provider_id!r}.", code="provider_not_found")
    runtime.providers.remove(provider_id)


def reset(provider_id: str) -> dict:
    state.runtime().providers.reset(provider_id)
    return view(provider_id)


async def test(provider_id: str, model: str | None) -> dict:
    """One tiny call straight to the provider (its breaker neither blocks nor counts it)."""
    guarded = state.runtime().providers.get(provider_id)
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
