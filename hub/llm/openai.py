"""The OpenAI-compatible provider (kind ``openai``): any server speaking ``/chat/completions``.

``complete()`` posts ``{base_url}/chat/completions``; ``stream()`` posts it with
``stream: true`` and ``stream_options: {"include_usage": true}``, reads the server-sent
events until ``data: [DONE]``, assembles tool-call fragments by their ``index`` into whole
calls (yielded after the text, before :class:`StreamEnd`) and takes ``usage`` from the final
chunk, or counts tokens locally (:func:`count_tokens`) when the server sends none. Every
OpenAI parameter of the request (tools, ``tool_choice``, ``response_format``, ``stop``,
``n``, ``seed`` …) is forwarded as the client sent it, so this adapter refuses nothing: the
upstream honours a parameter or answers 400, which comes back as :class:`UpstreamError` with
the upstream's ``error`` object. With ``n`` > 1 the stream tags each delta with its choice
(``complete()`` answers the first choice only).
``list_models()`` asks ``GET {base_url}/models`` once and caches the answer; ``models()``
returns that cache, or the configured names until it is filled (or when the upstream
cannot list models).

Failures: an error status becomes :class:`UpstreamError` carrying that status and a snippet
of the body (408 and 504 become :class:`UpstreamTimeout`); a connect or read timeout becomes
:class:`UpstreamTimeout`; a refused or dropped connection :class:`UpstreamError` without a
status. A connection failure (``ConnectError``/``ConnectTimeout``) is retried once, before
anything was sent; nothing else is retried, and a stream is never retried once it started.

The API key goes out as ``Authorization: Bearer …`` and nowhere else: it is kept in a
wrapper whose repr is ``'***'``, scrubbed from any upstream body quoted in an error, and
exceptions are raised without chaining the transport's (whose request holds the headers).

Without an injected ``client`` each call opens its own ``httpx.AsyncClient``, so a provider
works from any event loop; pass a shared client for connection reuse (its owner closes it,
and it must stay on one loop). The provider's timeouts apply to every request either way.
Those per-call clients share one TLS context: building one loads the system's CA bundle,
about 30 ms of CPU that would otherwise block the event loop on every call (the streaming
benchmark found it as +30 ms to every first token).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from hub.core.problems import Problem
from hub.llm.base import (
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
    UpstreamError,
    UpstreamTimeout,
    Usage,
    count_prompt_tokens,
    count_tokens,
    upstream_failure,
)

log = logging.getLogger("aether.providers")

SNIPPET_CHARS = 500
CONNECTION_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)
RAW_ARGUMENTS = "_raw"


class Secret:
    """A string that never shows in a repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def arguments_to_wire(arguments: dict[str, Any]) -> str:
    """Tool-call arguments as the wire carries them: JSON text (malformed text that
    :func:`parse_arguments` kept as ``{"_raw": text}`` goes back as it came)."""
    if set(arguments) == {RAW_ARGUMENTS} and isinstance(arguments[RAW_ARGUMENTS], str):
        return arguments[RAW_ARGUMENTS]
    return json.dumps(arguments)


def tool_call_to_wire(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments_to_wire(call.arguments)},
    }


def message_to_wire(message: ChatMessage) -> dict[str, Any]:
    """A :class:`ChatMessage` in the OpenAI chat shape."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [tool_call_to_wire(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


# Parameters forwarded as they are when set (``None``: not sent).
FORWARDED = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "n",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "logit_bias",
    "user",
)


def tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def request_to_wire(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions``."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [message_to_wire(m) for m in request.messages],
    }
    for name in FORWARDED:
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = [tool_to_wire(tool) for tool in request.tools]
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments from the wire: a JSON object as text. Empty text is ``{}``; text
    that is not a JSON object is kept as ``{"_raw": text}`` so the caller can tell the model
    its arguments were malformed instead of failing the turn."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {RAW_ARGUMENTS: str(raw)}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS: str(raw)}


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))
    except (TypeError, ValueError):
        return None


def retry_after_seconds(value: str | None) -> float | None:
    """The ``Retry-After`` header in seconds (an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every call (certificate checks stay on)."""
    return httpx.create_ssl_context()


class OpenAIProvider(Provider):
    """A chat-completions server at ``base_url`` (e.g. ``https://api.openai.com/v1``)."""

    kind = "openai"

    def __init__(
        self,
        id: str,
        base_url: str,
        api_key: str | None = None,
        *,
        models: Sequence[str] = (),
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.id = id
        self.base_url = base_url.rstrip("/")
        self._api_key = Secret(api_key) if api_key else None
        self.configured_models = list(models)
        self.timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        self._client = client
        self._models_cache: list[str] | None = None

    def __repr__(self) -> str:
        return (
            f"OpenAIProvider(id={self.id!r}, base_url={self.base_url!r}, "
            f"has_api_key={self.has_api_key})"
        )

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    # --- models ---------------------------------------------------------------------------

    def models(self) -> list[str]:
        if self._models_cache is not None:
            return list(self._models_cache)
        return list(self.configured_models)

    async def list_models(self, *, refresh: bool = False) -> list[str]:
        """``GET /models``, cached after the first success; on failure, :meth:`models`."""
        if self._models_cache is not None and not refresh:
            return list(self._models_cache)
        try:
            async with self._session() as client:
                response = await self._send(client, "GET", "/models")
                try:
                    await self._raise_for_status(response)
                    names = [str(item["id"]) for item in response.json()["data"]]
                finally:
                    await response.aclose()
        except (Problem, ValueError, KeyError, TypeError) as exc:
            log.warning("provider %s: cannot list models (%s)", self.id, type(exc).__name__)
            return self.models()
        self._models_cache = names
        return list(names)

    # --- completions ----------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        body = request_to_wire(request, stream=False)
        async with self._session() as client:
            response = await self._send(client, "POST", "/chat/completions", body)
            try:
                await self._raise_for_status(response)
                await self._read(response)
            finally:
                await response.aclose()
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice["message"]
            calls = [
                ToolCall(
                    str(tc.get("id") or f"call_{i}"),
                    str(tc["function"]["name"]),
                    parse_arguments(tc["function"].get("arguments")),
                )
                for i, tc in enumerate(message.get("tool_calls") or [])
            ]
            content = message.get("content") or ""
            finish = choice.get("finish_reason") or ("tool_calls" if calls else "stop")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise self._malformed(response.status_code, response.text) from None
        usage = parse_usage(data.get("usage")) or Usage(
            count_prompt_tokens(request.messages),
            count_tokens(content) + sum(count_tokens(json.dumps(c.arguments)) for c in calls),
        )
        return Completion(content=content, tool_calls=calls, finish_reason=finish, usage=usage)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        body = request_to_wire(request, stream=True)
        async with self._session() as client:
            response = await self._send(client, "POST", "/chat/completions", body, stream=True)
            try:
                await self._raise_for_status(response)
                async with contextlib.aclosing(self._events(response, request)) as events:
                    async for event in events:
                        yield event
            finally:
                await response.aclose()

    async def _events(
        self, response: httpx.Response, request: CompletionRequest
    ) -> AsyncIterator[StreamEvent]:
        text: list[str] = []
        fragments: dict[tuple[int, int], dict[str, Any]] = {}  # (choice, call index) → call
        finishes: dict[int, str] = {}
        usage: Usage | None = None
        done = False
        async with contextlib.aclosing(self._sse_data(response)) as stream:
            async for data in stream:
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise self._malformed(response.status_code, data) from None
                if not isinstance(chunk, dict):
                    raise self._malformed(response.status_code, data)
                if chunk.get("error"):
                    raise self._stream_error(chunk["error"])
                usage = parse_usage(chunk.get("usage")) or usage
                for position, choice in enumerate(chunk.get("choices") or []):
                    index = choice.get("index")
                    index = index if isinstance(index, int) else position
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text.append(delta["content"])
                        yield TokenDelta(delta["content"], index)
                    for order, frag in enumerate(delta.get("tool_calls") or []):
                        at = frag.get("index")
                        at = at if isinstance(at, int) else order
                        slot = fragments.setdefault(
                            (index, at), {"id": "", "name": "", "arguments": ""}
                        )
                        function = frag.get("function") or {}
                        slot["id"] = slot["id"] or frag.get("id") or ""
                        slot["name"] = slot["name"] or function.get("name") or ""
                        slot["arguments"] += function.get("arguments") or ""
                    if choice.get("finish_reason"):
                        finishes[index] = choice["finish_reason"]
        if not done and not finishes:
            raise UpstreamError(
                "The upstream closed the stream before it finished.", provider=self.id
            )
        called: set[int] = set()
        for (index, at), slot in sorted(fragments.items()):
            called.add(index)
            call_id = slot["id"] or f"call_{at}"
            yield ToolCallDelta(
                ToolCall(call_id, slot["name"], parse_arguments(slot["arguments"])), index
            )
        if usage is None:
            usage = Usage(
                count_prompt_tokens(request.messages),
                count_tokens("".join(text))
                + sum(count_tokens(slot["arguments"]) for slot in fragments.values()),
            )
        count = max([request.choices - 1, *finishes, *called]) + 1
        reasons = tuple(
            finishes.get(i) or ("tool_calls" if i in called else "stop") for i in range(count)
        )
        yield StreamEnd(reasons[0], usage, reasons if count > 1 else ())

    async def _sse_data(self, response: httpx.Response) -> AsyncIterator[str]:
        """The ``data`` of each server-sent event (multi-line data joined by newlines)."""
        lines: list[str] = []
        try:
            async for line in response.aiter_lines():
                if not line:
                    if lines:
                        yield "\n".join(lines)
                        lines = []
                elif line.startswith("data:"):
                    value = line[5:]
                    lines.append(value[1:] if value.startswith(" ") else value)
                # comments (":") and other fields (event, id, retry) carry nothing we need
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                "The upstream stopped sending in the middle of the stream.", provider=self.id
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"The connection to the upstream broke mid-stream ({type(exc).__name__}).",
                provider=self.id,
            ) from None
        if lines:
            yield "\n".join(lines)

    # --- transport ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        async with httpx.AsyncClient(timeout=self.timeout, verify=_tls_context()) as client:
            yield client

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return headers

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request; a connection failure is retried once (nothing was sent yet)."""
        for attempt in (1, 2):
            request = client.build_request(
                method,
                self.base_url + path,
                json=body,
                headers=self._headers(),
                timeout=self.timeout,
            )
            try:
                return await client.send(request, stream=stream)
            except CONNECTION_FAILURES as exc:
                if attempt == 1:
                    log.warning("provider %s: %s, retrying once", self.id, type(exc).__name__)
                    continue
                if isinstance(exc, httpx.ConnectTimeout):
                    raise UpstreamTimeout(
                        "Connecting to the upstream timed out.", provider=self.id
                    ) from None
                raise UpstreamError(
                    f"Cannot connect to the upstream ({self._scrub(str(exc)) or 'refused'}).",
                    provider=self.id,
                ) from None
            except httpx.TimeoutException:
                raise UpstreamTimeout(
                    "The upstream did not answer in time.", provider=self.id
                ) from None
            except httpx.HTTPError as exc:
                raise UpstreamError(
                    f"The request to the upstream failed ({type(exc).__name__}).",
                    provider=self.id,
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(self, response: httpx.Response) -> None:
        try:
            await response.aread()
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                "The upstream did not answer in time.", provider=self.id
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"Reading the upstream's answer failed ({type(exc).__name__}).",
                provider=self.id,
            ) from None

    async def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        snippet = ""
        with contextlib.suppress(Problem):
            await self._read(response)
            snippet = response.text
        raise upstream_failure(
            response.status_code,
            f"The upstream answered {response.status_code}: {self._snippet(snippet)}",
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
            provider=self.id,
            upstream_error=self._error_object(snippet),
        )

    def _error_object(self, text: str) -> dict[str, Any] | None:
        """The ``error`` object of an OpenAI-shaped error body (scrubbed), if it is one."""
        try:
            error = json.loads(text).get("error")
        except (ValueError, AttributeError):
            return None
        if not isinstance(error, dict):
            return None
        fields = ("message", "type", "param", "code")
        return {
            name: self._scrub(error[name]) if isinstance(error.get(name), str) else None
            for name in fields
        }

    def _stream_error(self, error: Any) -> UpstreamError | UpstreamTimeout:
        status = error.get("code") if isinstance(error, dict) else None
        detail = json.dumps(error) if not isinstance(error, str) else error
        message = f"The upstream reported an error mid-stream: {self._snippet(detail)}"
        if isinstance(status, int) and 400 <= status <= 599:
            return upstream_failure(status, message, provider=self.id)
        return UpstreamError(message, provider=self.id)

    def _malformed(self, status: int, text: str) -> UpstreamError:
        return UpstreamError(
            f"The upstream's answer is not a chat completion: {self._snippet(text)}",
            upstream_status=status,
            provider=self.id,
        )

    def _snippet(self, text: str) -> str:
        text = self._scrub(text.strip())
        return text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")

    def _scrub(self, text: str) -> str:
        """``text`` without the API key in it (upstreams sometimes echo it back)."""
        if self._api_key is not None and self._api_key.reveal():
            text = text.replace(self._api_key.reveal(), "***")
        return text
