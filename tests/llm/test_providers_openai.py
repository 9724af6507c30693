"""The openai provider end to end, against a real fake OpenAI-compatible upstream: a small
Starlette app served by uvicorn on 127.0.0.1 in a background thread. The request's
``model`` picks the upstream's behaviour (see ``BEHAVIOURS``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from hub.core.problems import Unprocessable
from hub.llm import (
    BuiltinProvider,
    ChatMessage,
    Completion,
    CompletionRequest,
    OpenAIProvider,
    StreamEnd,
    TokenDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    UpstreamError,
    UpstreamTimeout,
    Usage,
    collect,
    count_tokens,
    create_provider,
)
from tests.servers import refusing_port as closed_port
from tests.servers import serve

API_KEY = "sk-test-Zq9X7-very-secret"


# --- the fake upstream -----------------------------------------------------------------------


class Upstream:
    """What the fake upstream saw, and a switch that ends its slow answers."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.stop = threading.Event()
        self.base_url = ""

    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]


UPSTREAM = Upstream()


def sse(*chunks: dict | str) -> bytes:
    return b"".join(
        f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n".encode() for c in chunks
    )


def chunk(delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices, **extra}


def completion_body(message: dict, finish: str, usage: dict | None) -> dict:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


async def pause(seconds: float) -> None:
    """Sleep up to ``seconds``, or until the fixture shuts the upstream down."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not UPSTREAM.stop.is_set():
        await asyncio.sleep(0.02)


def streaming(parts: Callable[[], AsyncIterator[bytes]]) -> Response:
    return StreamingResponse(parts(), media_type="text/event-stream")


async def plain(body: dict, request: Request) -> Response:
    usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    message = {"role": "assistant", "content": "Hello there"}
    return JSONResponse(completion_body(message, "stop", usage))


async def plain_no_usage(body: dict, request: Request) -> Response:
    message = {"role": "assistant", "content": "Hello there, friend"}
    return JSONResponse(completion_body(message, "stop", None))


async def tools(body: dict, request: Request) -> Response:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'},
            },
            {
                "id": "call_def",
                "type": "function",
                "function": {"name": "broken", "arguments": '{"city": '},
            },
        ],
    }
    return JSONResponse(completion_body(message, "tool_calls", {"prompt_tokens": 5}))


async def stream(body: dict, request: Request) -> Response:
    with_usage = (body.get("stream_options") or {}).get("include_usage")

    async def parts() -> AsyncIterator[bytes]:
        yield b": keep-alive comment\n\n"
        yield sse(chunk({"role": "assistant", "content": ""}))
        for piece in ["Hel", "lo", ", wor", "ld"]:
            yield sse(chunk({"content": piece}))
        yield sse(chunk({}, "stop"))
        if with_usage:
            yield sse(chunk(usage={"prompt_tokens": 7, "completion_tokens": 4}))
        yield sse("[DONE]")

    return streaming(parts)


async def stream_no_usage(body: dict, request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for piece in ["Hello", ", ", "world", "!"]:
            yield sse(chunk({"content": piece}))
        yield sse(chunk({}, "stop"), "[DONE]")

    return streaming(parts)


async def stream_tools(body: dict, request: Request) -> Response:
    def frag(index: int, **kw) -> dict:
        function = {k: v for k, v in kw.items() if k in ("name", "arguments")}
        out: dict = {"index": index, "function": function}
        if "id" in kw:
            out.update(id=kw["id"], type="function")
        return chunk({"tool_calls": [out]})

    async def parts() -> AsyncIterator[bytes]:
        yield sse(chunk({"role": "assistant", "content": "Checking"}))
        yield sse(frag(0, id="call_a", name="lookup", arguments=""))
        yield sse(frag(0, arguments='{"ci'))
        yield sse(frag(1, id="call_b", name="clock", arguments="{"))
        yield sse(frag(0, arguments='ty": "Os'))
        yield sse(frag(1, arguments="}"))
        yield sse(frag(0, arguments='lo"}'))
        yield sse(chunk({}, "tool_calls"))
        yield sse(chunk(usage={"prompt_tokens": 20, "completion_tokens": 9}), "[DONE]")

    return streaming(parts)


async def stream_choices(body: dict, request: Request) -> Response:
    def at(index: int, delta: dict, finish: str | None = None) -> dict:
        return {"id": "c", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    async def parts() -> AsyncIterator[bytes]:
        yield sse(at(0, {"role": "assistant", "content": "A"}), at(1, {"content": "B"}))
        call = {"index": 0, "id": "call_x", "type": "function"}
        yield sse(at(1, {"tool_calls": [{**call, "function": {"name": "f", "arguments": "{}"}}]}))
        yield sse(at(0, {"content": "a"}), at(0, {}, "length"), at(1, {}, "tool_calls"))
        yield sse(chunk(usage={"prompt_tokens": 3, "completion_tokens": 4}), "[DONE]")

    return streaming(parts)


def error(status: int, **headers: str) -> Callable:
    async def answer(body: dict, request: Request) -> Response:
        text = json.dumps({"error": {"message": f"upstream says {status}", "type": "x"}})
        return Response(text, status, headers=headers, media_type="application/json")

    return answer


async def error_echoing_key(body: dict, request: Request) -> Response:
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    return JSONResponse({"error": {"message": f"Incorrect API key provided: {key}"}}, 401)


async def slow(body: dict, request: Request) -> Response:
    await pause(5)
    return await plain(body, request)


async def stall(body: dict, request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield sse(chunk({"content": "first "}))
        await pause(5)
        yield sse(chunk({}, "stop"), "[DONE]")

    return streaming(parts)


async def drop(body: dict, request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield sse(chunk({"content": "first "}))
        raise RuntimeError("the upstream falls over mid-stream")

    return streaming(parts)


async def truncated(body: dict, request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield sse(chunk({"content": "first "}))

    return streaming(parts)


async def stream_error_event(body: dict, request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield sse(chunk({"content": "first "}))
        yield sse({"error": {"message": "overloaded", "code": 503}})

    return streaming(parts)


async def _text_error() -> Response:
    return PlainTextResponse("bad request", 400)


async def not_json(body: dict, request: Request) -> Response:
    return PlainTextResponse("<html>gateway page</html>")


BEHAVIOURS: dict[str, Callable] = {
    "plain": plain,
    "plain-no-usage": plain_no_usage,
    "tools": tools,
    "stream": stream,
    "stream-no-usage": stream_no_usage,
    "stream-tools": stream_tools,
    "stream-choices": stream_choices,
    "error-500": error(500),
    "error-400": error(400),
    "error-408": error(408),
    "error-429": error(429, **{"Retry-After": "7"}),
    "error-echo-key": error_echoing_key,
    "slow": slow,
    "stall": stall,
    "drop": drop,
    "truncated": truncated,
    "stream-error-event": stream_error_event,
    "not-json": not_json,
    "not-json-error": lambda body, request: _text_error(),
}


async def chat_completions(request: Request) -> Response:
    body = await request.json()
    UPSTREAM.requests.append(
        {"path": request.url.path, "headers": dict(request.headers), "body": body}
    )
    return await BEHAVIOURS[body["model"]](body, request)


async def list_models(request: Request) -> Response:
    UPSTREAM.requests.append({"path": request.url.path, "headers": dict(request.headers)})
    return JSONResponse({"object": "list", "data": [{"id": "model-a"}, {"id": "model-b"}]})


async def broken_models(request: Request) -> Response:
    return JSONResponse({"error": "nope"}, 500)


APP = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models),
        Route("/broken/v1/models", broken_models),
    ]
)


@pytest.fixture(scope="module")
def upstream_server():
    with serve(APP) as port:
        UPSTREAM.base_url = f"http://127.0.0.1:{port}/v1"
        yield UPSTREAM
        UPSTREAM.stop.set()


@pytest.fixture
def upstream(upstream_server) -> Upstream:
    upstream_server.requests.clear()
    return upstream_server


@pytest.fixture
def refusing_port():
    """A port bound but not listening: connections to it are refused."""
    with closed_port() as port:
        yield port


@pytest.fixture
def blackhole_port():
    """A port whose accept queue is full: new connections hang until they time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # the connection is under way
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


class CountingTransport(httpx.AsyncBaseTransport):
    """A real transport that counts attempts; the first ``refuse`` go to ``refused_port``."""

    def __init__(self, refuse: int = 0, refused_port: int | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.attempts = 0
        self.refuse = refuse
        self.refused_port = refused_port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts <= self.refuse:
            request.url = request.url.copy_with(port=self.refused_port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# --- helpers -----------------------------------------------------------------------------------


def provider(base_url: str, **kw) -> OpenAIProvider:
    kw.setdefault("api_key", API_KEY)
    return OpenAIProvider("remote", base_url, **kw)


def ask(model: str, text: str = "Hi there", **kw) -> CompletionRequest:
    return CompletionRequest(model, [ChatMessage("user", text)], **kw)


def complete(p: OpenAIProvider, req: CompletionRequest) -> Completion:
    return asyncio.run(p.complete(req))


def stream(p: OpenAIProvider, req: CompletionRequest) -> tuple[list, Exception | None]:
    """Every event the stream yielded, and what it raised (None when it ended well)."""
    seen: list = []

    async def run() -> None:
        async for event in p.stream(req):
            seen.append(event)

    try:
        asyncio.run(run())
    except Exception as exc:
        return seen, exc
    return seen, None


def via(transport: CountingTransport, base_url: str, action: Callable, **kw):
    """``action(provider)`` with the provider on an AsyncClient over ``transport``."""

    async def run():
        async with httpx.AsyncClient(transport=transport) as client:
            return await action(provider(base_url, client=client, **kw))

    return asyncio.run(run())


async def drain(p: OpenAIProvider, req: CompletionRequest) -> list:
    return [event async for event in p.stream(req)]


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenDelta))


# --- plain completions -------------------------------------------------------------------------


def test_complete_posts_chat_completions_and_reads_the_answer(upstream):
    result = complete(provider(upstream.base_url), ask("plain"))
    assert result == Completion("Hello there", [], "stop", Usage(11, 2))
    [seen] = upstream.chat_requests()
    assert seen["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert seen["body"] == {"model": "plain", "messages": [{"role": "user", "content": "Hi there"}]}


def test_the_whole_request_goes_out_in_the_openai_shape(upstream):
    call = ToolCall("call_1", "lookup", {"city": "Oslo"})
    req = CompletionRequest(
        "plain",
        [
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Weather?"),
            ChatMessage("assistant", None, tool_calls=[call]),
            ChatMessage("tool", "sunny", tool_call_id="call_1", name="lookup"),
        ],
        temperature=0.2,
        max_tokens=50,
        tools=[ToolSpec("lookup", "Look a city up.", {"type": "object", "properties": {}})],
    )
    complete(provider(upstream.base_url), req)
    assert upstream.chat_requests()[0]["body"] == {
        "model": "plain",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "content": "sunny", "tool_call_id": "call_1", "name": "lookup"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Look a city up.",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ],
    }


def test_every_openai_parameter_is_forwarded_as_sent(upstream):
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}
    options = {
        "max_completion_tokens": 9,
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "parallel_tool_calls": False,
        "response_format": fmt,
        "n": 2,
        "top_p": 0.5,
        "frequency_penalty": 0.1,
        "presence_penalty": -0.1,
        "seed": 42,
        "logit_bias": {"50256": -100},
        "user": "end-user-1",
    }
    tool = ToolSpec("lookup", "", {"type": "object"}, strict=True)
    req = ask("stream", tools=[tool], stop=("END", "\n\n"), **options)
    _, exc = stream(provider(upstream.base_url), req)
    assert exc is None
    body = upstream.chat_requests()[0]["body"]
    assert body == {
        "model": "stream",
        "messages": [{"role": "user", "content": "Hi there"}],
        **options,
        "stop": ["END", "\n\n"],
        "tools": [
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": {"type": "object"}, "strict": True},
            }
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_without_an_api_key_no_authorization_is_sent(upstream):
    complete(provider(upstream.base_url, api_key=None), ask("plain"))
    assert "authorization" not in upstream.chat_requests()[0]["headers"]


def test_complete_counts_tokens_locally_when_the_upstream_reports_no_usage(upstream):
    result = complete(provider(upstream.base_url), ask("plain-no-usage", "one two three"))
    assert result.usage == Usage(3, count_tokens("Hello there, friend"))


def test_complete_reads_tool_calls_and_keeps_malformed_arguments_raw(upstream):
    result = complete(provider(upstream.base_url), ask("tools"))
    assert result.content == ""
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCall("call_abc", "lookup", {"city": "Oslo"}),
        ToolCall("call_def", "broken", {"_raw": '{"city": '}),
    ]
    assert result.usage == Usage(5, 0)


def test_an_answer_that_is_not_a_completion_is_an_upstream_error(upstream):
    with pytest.raises(UpstreamError) as info:
        complete(provider(upstream.base_url), ask("not-json"))
    assert info.value.upstream_status == 200
    assert "gateway page" in info.value.detail


def test_the_base_url_may_end_with_a_slash(upstream):
    assert complete(provider(upstream.base_url + "/"), ask("plain")).content == "Hello there"


# --- streaming ---------------------------------------------------------------------------------


def test_stream_yields_tokens_then_the_end_with_the_upstream_usage(upstream):
    events, exc = stream(provider(upstream.base_url), ask("stream"))
    assert exc is None
    assert events == [
        TokenDelta("Hel"),
        TokenDelta("lo"),
        TokenDelta(", wor"),
        TokenDelta("ld"),
        StreamEnd("stop", Usage(7, 4)),
    ]
    body = upstream.chat_requests()[0]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_stream_counts_tokens_locally_without_a_usage_chunk(upstream):
    events, exc = stream(provider(upstream.base_url), ask("stream-no-usage", "a b, c"))
    assert exc is None
    assert text_of(events) == "Hello, world!"
    assert events[-1] == StreamEnd("stop", Usage(4, count_tokens("Hello, world!")))


def test_stream_assembles_tool_call_fragments_by_index(upstream):
    events, exc = stream(provider(upstream.base_url), ask("stream-tools"))
    assert exc is None
    assert events == [
        TokenDelta("Checking"),
        ToolCallDelta(ToolCall("call_a", "lookup", {"city": "Oslo"})),
        ToolCallDelta(ToolCall("call_b", "clock", {})),
        StreamEnd("tool_calls", Usage(20, 9)),
    ]


def test_a_stream_of_several_choices_tags_each_delta_with_its_choice(upstream):
    events, exc = stream(provider(upstream.base_url), ask("stream-choices", n=2))
    assert exc is None
    assert events == [
        TokenDelta("A", 0),
        TokenDelta("B", 1),
        TokenDelta("a", 0),
        ToolCallDelta(ToolCall("call_x", "f", {}), 1),
        StreamEnd("length", Usage(3, 4), ("length", "tool_calls")),
    ]
    # collecting keeps the first choice
    result = asyncio.run(collect(provider(upstream.base_url).stream(ask("stream-choices", n=2))))
    assert (result.content, result.tool_calls, result.finish_reason) == ("Aa", [], "length")


def test_collecting_the_stream_gives_the_same_answer(upstream):
    p = provider(upstream.base_url)
    events, _ = stream(p, ask("stream-tools"))
    result = asyncio.run(collect(p.stream(ask("stream-tools"))))
    assert result == Completion(
        "Checking",
        [e.call for e in events if isinstance(e, ToolCallDelta)],
        "tool_calls",
        Usage(20, 9),
    )


def test_a_stream_that_stops_early_is_an_upstream_error(upstream):
    events, exc = stream(provider(upstream.base_url), ask("truncated"))
    assert text_of(events) == "first "
    assert isinstance(exc, UpstreamError)
    assert exc.status == 502


def test_an_error_event_mid_stream_becomes_the_matching_error(upstream):
    events, exc = stream(provider(upstream.base_url), ask("stream-error-event"))
    assert text_of(events) == "first "
    assert isinstance(exc, UpstreamError)
    assert exc.upstream_status == 503
    assert "overloaded" in exc.detail


def test_a_dropped_connection_mid_stream_fails_and_is_not_retried(upstream):
    transport = CountingTransport()
    seen: list = []

    async def action(p: OpenAIProvider) -> None:
        async for event in p.stream(ask("drop")):
            seen.append(event)

    with pytest.raises(UpstreamError) as info:
        via(transport, upstream.base_url, action)
    assert seen == [TokenDelta("first ")]
    assert info.value.upstream_status is None
    assert transport.attempts == 1
    assert len(upstream.chat_requests()) == 1


# --- upstream errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(("model", "status"), [("error-500", 500), ("error-400", 400)])
def test_an_error_status_becomes_an_upstream_error_with_the_body(upstream, mode, model, status):
    p = provider(upstream.base_url)
    if mode == "complete":
        with pytest.raises(UpstreamError) as info:
            complete(p, ask(model))
        exc = info.value
    else:
        events, exc = stream(p, ask(model))
        assert events == []
    assert type(exc) is UpstreamError
    assert (exc.status, exc.upstream_status) == (502, status)
    assert f"upstream says {status}" in exc.detail
    assert exc.to_dict("r")["provider"] == "remote"
    assert len(upstream.chat_requests()) == 1  # an error status is never retried


def test_an_openai_shaped_error_body_is_kept_as_the_upstream_error(upstream):
    _, exc = stream(provider(upstream.base_url), ask("error-400"))
    assert exc.upstream_error == {
        "message": "upstream says 400",
        "type": "x",
        "param": None,
        "code": None,
    }
    _, exc = stream(provider(upstream.base_url), ask("not-json-error"))
    assert exc.upstream_error is None


def test_429_carries_the_upstream_retry_after(upstream):
    with pytest.raises(UpstreamError) as info:
        complete(provider(upstream.base_url), ask("error-429"))
    assert info.value.upstream_status == 429
    assert info.value.retry_after == 7.0


def test_an_upstream_408_is_a_timeout(upstream):
    _, exc = stream(provider(upstream.base_url), ask("error-408"))
    assert type(exc) is UpstreamTimeout
    assert (exc.status, exc.upstream_status) == (504, 408)


# --- timeouts and connection failures ----------------------------------------------------------


def test_a_slow_upstream_hits_the_read_timeout(upstream):
    p = provider(upstream.base_url, read_timeout=0.2)
    with pytest.raises(UpstreamTimeout) as info:
        complete(p, ask("slow"))
    assert info.value.status == 504
    assert info.value.upstream_status is None


def test_a_stream_that_stalls_times_out_after_its_first_tokens(upstream):
    events, exc = stream(provider(upstream.base_url, read_timeout=0.2), ask("stall"))
    assert events == [TokenDelta("first ")]
    assert isinstance(exc, UpstreamTimeout)
    assert len(upstream.chat_requests()) == 1


@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_a_refused_connection_is_retried_once_then_fails(refusing_port, mode):
    transport = CountingTransport()
    action = (
        (lambda p: p.complete(ask("plain")))
        if mode == "complete"
        else (lambda p: drain(p, ask("stream")))
    )
    with pytest.raises(UpstreamError) as info:
        via(transport, f"http://127.0.0.1:{refusing_port}/v1", action)
    assert transport.attempts == 2
    assert info.value.upstream_status is None
    assert info.value.status == 502


def test_the_retry_succeeds_when_the_second_connection_works(upstream, refusing_port):
    transport = CountingTransport(refuse=1, refused_port=refusing_port)
    result = via(transport, upstream.base_url, lambda p: p.complete(ask("plain")))
    assert result.content == "Hello there"
    assert transport.attempts == 2
    assert len(upstream.chat_requests()) == 1


def test_a_stream_is_retried_when_its_first_connection_is_refused(upstream, refusing_port):
    transport = CountingTransport(refuse=1, refused_port=refusing_port)
    events = via(transport, upstream.base_url, lambda p: drain(p, ask("stream")))
    assert text_of(events) == "Hello, world"
    assert transport.attempts == 2
    assert len(upstream.chat_requests()) == 1


def test_a_connect_timeout_is_retried_once_then_is_a_timeout(blackhole_port):
    transport = CountingTransport()
    with pytest.raises(UpstreamTimeout) as info:
        via(
            transport,
            f"http://127.0.0.1:{blackhole_port}/v1",
            lambda p: p.complete(ask("plain")),
            connect_timeout=0.1,
        )
    assert transport.attempts == 2
    assert info.value.status == 504


def test_the_providers_timeouts_apply_to_an_injected_client(upstream):
    async def call():
        async with httpx.AsyncClient(timeout=60) as client:
            p = provider(upstream.base_url, read_timeout=0.2, client=client)
            await p.complete(ask("slow"))

    with pytest.raises(UpstreamTimeout):
        asyncio.run(call())


# --- models ------------------------------------------------------------------------------------


def test_models_come_from_the_upstream_once_and_are_cached(upstream):
    p = provider(upstream.base_url, models=["configured"])
    assert p.models() == ["configured"]
    assert asyncio.run(p.list_models()) == ["model-a", "model-b"]
    assert p.models() == ["model-a", "model-b"]
    assert asyncio.run(p.list_models()) == ["model-a", "model-b"]
    listed = [r for r in upstream.requests if r["path"] == "/v1/models"]
    assert len(listed) == 1
    assert listed[0]["headers"]["authorization"] == f"Bearer {API_KEY}"
    asyncio.run(p.list_models(refresh=True))
    assert len([r for r in upstream.requests if r["path"] == "/v1/models"]) == 2


def test_models_fall_back_to_the_configured_names(upstream, refusing_port):
    broken = provider(upstream.base_url.replace("/v1", "/broken/v1"), models=["x", "y"])
    assert asyncio.run(broken.list_models()) == ["x", "y"]
    assert broken.models() == ["x", "y"]
    unreachable = provider(f"http://127.0.0.1:{refusing_port}/v1", models=["z"])
    assert asyncio.run(unreachable.list_models()) == ["z"]


# --- the API key never leaks ---------------------------------------------------------------------


def test_the_api_key_appears_in_no_error_repr_or_log(upstream, refusing_port, caplog):
    caplog.set_level(logging.DEBUG)
    p = provider(upstream.base_url, read_timeout=0.2)
    errors: list[BaseException] = []
    for model in ["error-echo-key", "error-500", "slow", "drop", "not-json"]:
        try:
            complete(p, ask(model))
        except Exception as exc:
            errors.append(exc)
        errors.append(stream(p, ask(model))[1])
    try:
        complete(provider(f"http://127.0.0.1:{refusing_port}/v1"), ask("plain"))
    except Exception as exc:
        errors.append(exc)
    assert len(errors) == 11 and all(errors)
    echoed = errors[0]
    assert isinstance(echoed, UpstreamError) and echoed.upstream_status == 401
    assert "Incorrect API key provided: ***" in echoed.detail
    texts = [repr(p), str(vars(p)), caplog.text]
    for exc in errors:
        texts += [str(exc), repr(exc), json.dumps(exc.to_dict("r"))]
        texts.append("".join(traceback.format_exception(exc)))
    for text in texts:
        assert API_KEY not in text
    assert repr(p) == (
        f"OpenAIProvider(id='remote', base_url={upstream.base_url!r}, has_api_key=True)"
    )


# --- building providers --------------------------------------------------------------------------


def test_create_provider_builds_each_kind(upstream):
    remote = create_provider(
        "gw", "openai", base_url=upstream.base_url, api_key=API_KEY, models=["m"], read_timeout=3
    )
    assert isinstance(remote, OpenAIProvider)
    assert (remote.id, remote.kind, remote.models(), remote.has_api_key) == (
        "gw",
        "openai",
        ["m"],
        True,
    )
    assert remote.timeout.read == 3
    assert complete(remote, ask("plain")).content == "Hello there"
    local = create_provider("local", "builtin")
    assert isinstance(local, BuiltinProvider) and local.id == "local"


def test_create_provider_refuses_what_it_cannot_build():
    with pytest.raises(Unprocessable) as info:
        create_provider("x", "anthropic")
    assert info.value.code == "unknown_provider_kind"
    with pytest.raises(Unprocessable) as info:
        create_provider("x", "openai")
    assert info.value.code == "provider_base_url_required"
