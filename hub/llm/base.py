"""The provider interface: what the hub sends to a language model and what comes back.

Every adapter (``builtin``, ``openai``) speaks the same async interface:

- ``complete(request)`` answers one :class:`Completion`;
- ``stream(request)`` is an async generator of :class:`TokenDelta` (text as it comes),
  :class:`ToolCallDelta` (one *complete* tool call, never a fragment) and exactly one final
  :class:`StreamEnd` (finish reason and usage). A stream that stops without a ``StreamEnd``
  failed: it raised.

Failures are problems from :mod:`hub.core.problems`, so a handler can let them through:
:class:`UpstreamError` (502, the upstream answered an error or could not be reached),
:class:`UpstreamTimeout` (504) and :class:`BreakerOpen` (503, the circuit breaker refuses
calls for now).
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hub.core.problems import ProviderError, ProviderTimeout, ServiceUnavailable

# --- messages and requests ---------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A call of tool ``name`` the model asks for; ``arguments`` is the decoded JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """One message of the conversation, in the OpenAI chat shape.

    ``role`` is ``system``, ``user``, ``assistant`` or ``tool``. An assistant message that
    calls tools carries ``tool_calls`` (its ``content`` may be ``None``); a tool result
    carries the ``tool_call_id`` it answers and, optionally, the tool's ``name``.
    """

    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call; ``parameters`` is a JSON Schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class CompletionRequest:
    """What to ask: ``model`` is the provider's own model name (no ``provider/`` prefix)."""

    model: str
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[ToolSpec] | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """A whole answer. ``finish_reason`` is ``stop``, ``tool_calls``, ``length`` …"""

    content: str
    tool_calls: list[ToolCall]
    finish_reason: str
    usage: Usage


# --- stream events -----------------------------------------------------------------------


@dataclass(frozen=True)
class TokenDelta:
    """The next piece of the answer's text; joining every delta gives the whole text."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A complete tool call (adapters assemble upstream fragments before yielding it)."""

    call: ToolCall


@dataclass(frozen=True)
class StreamEnd:
    """The last event of every successful stream."""

    finish_reason: str
    usage: Usage


StreamEvent = TokenDelta | ToolCallDelta | StreamEnd


# --- errors ------------------------------------------------------------------------------

TIMEOUT_STATUSES = frozenset({408, 504})


class UpstreamError(ProviderError):
    """502: the upstream answered an error status, or could not be reached at all.

    ``upstream_status`` is the status the upstream answered (``None`` when there was no
    answer, e.g. connection refused); ``retry_after`` the seconds its ``Retry-After`` header
    asked for, when it sent one. Both also appear in the problem body, with ``provider``.
    """

    def __init__(
        self,
        detail: str | None = None,
        *,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        provider: str | None = None,
        **kw: Any,
    ) -> None:
        extra = {"upstream_status": upstream_status, "provider": provider}
        kw.update({k: v for k, v in extra.items() if v is not None})
        super().__init__(detail, **kw)
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.provider = provider


class UpstreamTimeout(ProviderTimeout):
    """504: the upstream did not answer in time (or answered 408/504 itself)."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        upstream_status: int | None = None,
        provider: str | None = None,
        **kw: Any,
    ) -> None:
        extra = {"upstream_status": upstream_status, "provider": provider}
        kw.update({k: v for k, v in extra.items() if v is not None})
        super().__init__(detail, **kw)
        self.upstream_status = upstream_status
        self.provider = provider


class BreakerOpen(ServiceUnavailable):
    """503 ``breaker_open``: the provider failed repeatedly; calls are refused for a while.

    ``retry_after`` (whole seconds, at least 1) is also sent as the ``Retry-After`` header.
    """

    code = "breaker_open"

    def __init__(
        self, detail: str | None = None, *, retry_after: float = 1, provider: str | None = None
    ) -> None:
        seconds = max(1, math.ceil(retry_after))
        extra = {"provider": provider} if provider else {}
        super().__init__(
            detail or "The provider failed repeatedly; calls are paused.",
            headers={"Retry-After": str(seconds)},
            **extra,
        )
        self.retry_after = seconds
        self.provider = provider


def upstream_failure(
    status: int,
    detail: str,
    *,
    retry_after: float | None = None,
    provider: str | None = None,
) -> UpstreamError | UpstreamTimeout:
    """The error for an upstream that answered ``status``: 408 and 504 are timeouts."""
    if status in TIMEOUT_STATUSES:
        return UpstreamTimeout(detail, upstream_status=status, provider=provider)
    return UpstreamError(detail, upstream_status=status, retry_after=retry_after, provider=provider)


# --- tokens ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def count_tokens(text: str | None) -> int:
    """Approximate token count: each run of word characters and each punctuation mark or
    symbol counts one; whitespace counts nothing. ``"Hello, world!"`` is 4.

    Deterministic and dependency-free; it tends to undercount real BPE tokenizers on long
    words and overcount on punctuation-heavy text. Used where the upstream reports no usage.
    """
    if not text:
        return 0
    return len(_TOKEN.findall(text))


def count_prompt_tokens(messages: list[ChatMessage]) -> int:
    """:func:`count_tokens` over every message's content."""
    return sum(count_tokens(m.content) for m in messages)


# --- the interface -----------------------------------------------------------------------


class Provider(abc.ABC):
    """One configured LLM backend. ``id`` is the slug agents name it by (``id/model``);
    ``kind`` the adapter (``builtin`` or ``openai``)."""

    id: str
    kind: str

    @abc.abstractmethod
    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Answer ``request`` as events, ending with one :class:`StreamEnd` (an async
        generator: nothing happens until the caller iterates)."""

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer ``request`` in one piece (by default: collect :meth:`stream`)."""
        return await collect(self.stream(request))

    @abc.abstractmethod
    def models(self) -> list[str]:
        """The model names this provider offers, as far as known without I/O."""

    async def list_models(self, *, refresh: bool = False) -> list[str]:
        """The model names, asking the upstream when the adapter can (default: :meth:`models`)."""
        return self.models()


async def collect(events: AsyncIterator[StreamEvent]) -> Completion:
    """Gather a stream into a :class:`Completion`; a stream without ``StreamEnd`` is an error."""
    parts: list[str] = []
    calls: list[ToolCall] = []
    end: StreamEnd | None = None
    async for event in events:
        if isinstance(event, TokenDelta):
            parts.append(event.text)
        elif isinstance(event, ToolCallDelta):
            calls.append(event.call)
        elif isinstance(event, StreamEnd):
            end = event
    if end is None:
        raise UpstreamError("The provider's stream ended without a finish reason.")
    return Completion(
        content="".join(parts), tool_calls=calls, finish_reason=end.finish_reason, usage=end.usage
    )


__all__ = [
    "BreakerOpen",
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "Provider",
    "StreamEnd",
    "StreamEvent",
    "TokenDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
    "collect",
    "count_prompt_tokens",
    "count_tokens",
    "upstream_failure",
]
