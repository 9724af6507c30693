"""The provider interface: what the hub sends to a language model and what comes back.

Every adapter (``builtin``, ``openai``) speaks the same async interface:

- ``complete(request)`` answers one :class:`Completion`;
- ``stream(request)`` is an async generator of :class:`TokenDelta` (text as it comes),
  :class:`ToolCallDelta` (one *complete* tool call, never a fragment) and exactly one final
  :class:`StreamEnd` (finish reason and usage). A stream that stops without a ``StreamEnd``
  failed: it raised. A request for ``n`` choices tags each delta with its choice's ``index``;
  the ``StreamEnd`` then carries every choice's finish reason and the usage of them all.
- ``check(request)`` refuses, before anything is sent, a request the adapter cannot honour
  (:class:`UnsupportedParameter`, a 400 naming the parameter): a parameter is honoured or
  refused, never dropped. Adapters that forward every parameter to an upstream refuse
  nothing themselves; the upstream's own refusal comes back as an :class:`UpstreamError`
  with its status (400) and its error object.

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

from hub.core.problems import BadRequest, ProviderError, ProviderTimeout, ServiceUnavailable

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
    """A tool the model may call; ``parameters`` is a JSON Schema for its arguments;
    ``strict`` is OpenAI's strict mode for them (``None``: not asked)."""

    name: str
    description: str
    parameters: dict[str, Any]
    strict: bool | None = None


@dataclass(frozen=True)
class CompletionRequest:
    """What to ask: ``model`` is the provider's own model name (no ``provider/`` prefix).

    The fields after ``tools`` are OpenAI's other request parameters, as the client sent them
    (``None``: not sent): ``tool_choice`` (``"none"``, ``"auto"``, ``"required"`` or
    ``{"type": "function", "function": {"name": …}}``), ``response_format`` (``{"type":
    "text" | "json_object" | "json_schema", "json_schema": {…}}``), ``stop`` (sequences), ``n``
    (choices) and the sampling ones. An adapter forwards them or refuses them (``check``).
    """

    model: str
    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[ToolSpec] | None = None
    max_completion_tokens: int | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    n: int | None = None
    stop: tuple[str, ...] | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @property
    def token_limit(self) -> int | None:
        """The most completion tokens to produce (``max_completion_tokens`` wins)."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def choices(self) -> int:
        return self.n or 1


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
    """The next piece of the answer's text; joining every delta gives the whole text.
    ``index`` is the choice it belongs to (always 0 unless the request asked ``n`` > 1)."""

    text: str
    index: int = 0


@dataclass(frozen=True)
class ToolCallDelta:
    """A complete tool call (adapters assemble upstream fragments before yielding it)."""

    call: ToolCall
    index: int = 0


@dataclass(frozen=True)
class StreamEnd:
    """The last event of every successful stream: the first choice's finish reason, and
    with ``n`` > 1 every choice's in ``finish_reasons``; ``usage`` covers them all."""

    finish_reason: str
    usage: Usage
    finish_reasons: tuple[str, ...] = ()

    def reason(self, index: int) -> str:
        """Choice ``index``'s finish reason."""
        if index < len(self.finish_reasons):
            return self.finish_reasons[index]
        return self.finish_reason


StreamEvent = TokenDelta | ToolCallDelta | StreamEnd


# --- errors ------------------------------------------------------------------------------

TIMEOUT_STATUSES = frozenset({408, 504})


class UnsupportedParameter(BadRequest):
    """400: the model cannot honour ``param`` (a top-level request field, e.g.
    ``response_format``) as asked. ``code`` is ``unsupported_parameter`` (the parameter at
    all) or ``unsupported_value`` (this value of it), as OpenAI names them."""

    code = "unsupported_parameter"

    def __init__(self, param: str, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail, errors=[{"field": f"body.{param}", "message": detail}], code=code)
        self.param = param


class UpstreamError(ProviderError):
    """502: the upstream answered an error status, or could not be reached at all.

    ``upstream_status`` is the status the upstream answered (``None`` when there was no
    answer, e.g. connection refused); ``retry_after`` the seconds its ``Retry-After`` header
    asked for, when it sent one. Both also appear in the problem body, with ``provider``.
    ``upstream_error`` is the ``error`` object of an OpenAI-shaped error body, when the
    upstream sent one (``message``, ``type``, ``param``, ``code``).
    """

    def __init__(
        self,
        detail: str | None = None,
        *,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        provider: str | None = None,
        upstream_error: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        extra = {"upstream_status": upstream_status, "provider": provider}
        kw.update({k: v for k, v in extra.items() if v is not None})
        super().__init__(detail, **kw)
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.provider = provider
        self.upstream_error = upstream_error


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
    upstream_error: dict[str, Any] | None = None,
) -> UpstreamError | UpstreamTimeout:
    """The error for an upstream that answered ``status``: 408 and 504 are timeouts."""
    if status in TIMEOUT_STATUSES:
        return UpstreamTimeout(detail, upstream_status=status, provider=provider)
    return UpstreamError(
        detail,
        upstream_status=status,
        retry_after=retry_after,
        provider=provider,
        upstream_error=upstream_error,
    )


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

    def check(self, request: CompletionRequest) -> None:
        """Raise :class:`UnsupportedParameter` for a parameter of ``request`` this adapter
        cannot honour (by default none: the adapter forwards them all)."""
        return None

    @abc.abstractmethod
    def models(self) -> list[str]:
        """The model names this provider offers, as far as known without I/O."""

    async def list_models(self, *, refresh: bool = False) -> list[str]:
        """The model names, asking the upstream when the adapter can (default: :meth:`models`)."""
        return self.models()


async def collect(events: AsyncIterator[StreamEvent]) -> Completion:
    """Gather a stream into a :class:`Completion` (of the first choice, when there are
    several); a stream without ``StreamEnd`` is an error."""
    parts: list[str] = []
    calls: list[ToolCall] = []
    end: StreamEnd | None = None
    async for event in events:
        if isinstance(event, TokenDelta) and event.index == 0:
            parts.append(event.text)
        elif isinstance(event, ToolCallDelta) and event.index == 0:
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
    "UnsupportedParameter",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
    "collect",
    "count_prompt_tokens",
    "count_tokens",
    "upstream_failure",
]
