"""LLM providers: one async interface (:class:`Provider`), two adapters (``builtin`` and
``openai``), a circuit breaker per provider and a registry of the configured ones.

Typical use::

    registry = ProviderRegistry()
    registry.register(BuiltinProvider())
    registry.register(create_provider("openai", "openai", base_url=url, api_key=key))
    provider, model = registry.resolve("builtin/echo")
    async for event in provider.stream(CompletionRequest(model, messages)):
        ...

Everything the registry hands out is a :class:`GuardedProvider`: calls go through that
provider's :class:`CircuitBreaker`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from hub.core.problems import NotFound, Unprocessable
from hub.llm.base import (
    BreakerOpen,
    ChatMessage,
    Completion,
    CompletionRequest,
    Provider,
    StreamEnd,
    StreamEvent,
    TokenDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    UnsupportedParameter,
    UpstreamError,
    UpstreamTimeout,
    Usage,
    collect,
    count_prompt_tokens,
    count_tokens,
)
from hub.llm.breaker import CircuitBreaker, GuardedProvider, State, counts_as_failure
from hub.llm.builtin import BuiltinProvider
from hub.llm.openai import OpenAIProvider

KINDS = ("builtin", "openai")


def create_provider(
    id: str,
    kind: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    models: Sequence[str] = (),
    connect_timeout: float = 10.0,
    read_timeout: float = 120.0,
) -> Provider:
    """A provider of ``kind`` from its stored configuration (``api_key`` already decrypted).

    Raises :class:`~hub.core.problems.Unprocessable` for an unknown kind or an ``openai``
    provider without a ``base_url``.
    """
    if kind == "builtin":
        return BuiltinProvider(id)
    if kind == "openai":
        if not base_url:
            raise Unprocessable(
                "An openai provider needs a base_url.", code="provider_base_url_required"
            )
        return OpenAIProvider(
            id,
            base_url,
            api_key,
            models=models,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
    raise Unprocessable(
        f"Unknown provider kind {kind!r}; known kinds: {', '.join(KINDS)}.",
        code="unknown_provider_kind",
    )


class ProviderRegistry:
    """The configured providers by id, each behind its own circuit breaker.

    ``breaker_factory(provider_id)`` makes each new breaker (default: ``CircuitBreaker()``);
    use it to set thresholds, a clock, or an ``on_change`` that knows the provider id.
    """

    def __init__(self, breaker_factory: Callable[[str], CircuitBreaker] | None = None) -> None:
        self._breaker_factory = breaker_factory or (lambda _id: CircuitBreaker())
        self._providers: dict[str, GuardedProvider] = {}
        self._lock = threading.Lock()

    def register(self, provider: Provider, *, keep_breaker: bool = True) -> GuardedProvider:
        """Add ``provider``, replacing one with the same id. By default a replacement keeps
        the breaker (and its state) of the provider it replaces, so reloading configuration
        does not forget failures; ``keep_breaker=False`` starts a fresh one."""
        if isinstance(provider, GuardedProvider):
            provider = provider.provider
        with self._lock:
            current = self._providers.get(provider.id)
            if current is not None and keep_breaker:
                breaker = current.breaker
            else:
                breaker = self._breaker_factory(provider.id)
            guarded = GuardedProvider(provider, breaker)
            self._providers[provider.id] = guarded
        return guarded

    def remove(self, provider_id: str) -> bool:
        """Forget a provider; whether it was there."""
        with self._lock:
            return self._providers.pop(provider_id, None) is not None

    def get(self, provider_id: str) -> GuardedProvider:
        """The provider, or :class:`~hub.core.problems.NotFound` (``provider_not_found``)."""
        provider = self._providers.get(provider_id)
        if provider is None:
            raise NotFound(f"No provider with id {provider_id!r}.", code="provider_not_found")
        return provider

    def resolve(self, model_ref: str) -> tuple[GuardedProvider, str]:
        """Split ``provider/model`` (the model part may itself hold slashes) into the
        provider and its model name."""
        provider_id, _, model = model_ref.partition("/")
        if not provider_id or not model:
            raise Unprocessable(
                f"Model {model_ref!r} is not of the form provider/model.",
                code="invalid_model_ref",
            )
        return self.get(provider_id), model

    def reset(self, provider_id: str) -> None:
        """Close the provider's circuit breaker."""
        self.get(provider_id).breaker.reset()

    def ids(self) -> list[str]:
        return sorted(self._providers)

    def __contains__(self, provider_id: object) -> bool:
        return provider_id in self._providers

    def __iter__(self) -> Iterator[GuardedProvider]:
        return iter([self._providers[i] for i in self.ids()])

    def __len__(self) -> int:
        return len(self._providers)


__all__ = [
    "KINDS",
    "BreakerOpen",
    "BuiltinProvider",
    "ChatMessage",
    "CircuitBreaker",
    "Completion",
    "CompletionRequest",
    "GuardedProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderRegistry",
    "State",
    "StreamEnd",
    "StreamEvent",
    "TokenDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "UnsupportedParameter",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
    "collect",
    "count_prompt_tokens",
    "count_tokens",
    "counts_as_failure",
    "create_provider",
]
