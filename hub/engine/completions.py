"""OpenAI-compatible chat completions: a provider model, or an agent with its loop.

Stateless (nothing is stored but the usage rows, the audit entry and the executions of an
agent's tools): ``model`` is ``provider/model``, or an agent id, whose system prompt,
temperature and max_tokens apply. The client's ``tools`` are offered to the model and their
calls answered to the client (``finish_reason: tool_calls``), to send the results back in
``tool`` messages. An agent's own tools (but those needing approval: nobody could give it
within a request) are offered as well and run here, in the agent loop, until the model
answers or calls a client tool; a client tool named like one of the agent's is a 400.

Every other parameter goes to the provider as sent; :meth:`~hub.llm.Provider.check` refuses
what the model cannot honour, and an upstream's own 400 is passed on as a 400 with its
``param`` — a parameter is honoured or refused, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from db import agents
from db.base import new_id
from hub.core.problems import BadRequest, Conflict, NotFound, Problem, Unprocessable, openai_error
from hub.engine import disclosure
from hub.engine.loop import AgentLoop, LoopState, Outcome, Owner, agent_toolset
from hub.events import log as events
from hub.llm import (
    ChatMessage,
    CompletionRequest,
    GuardedProvider,
    StreamEnd,
    StreamEvent,
    TokenDelta,
    ToolCallDelta,
    ToolSpec,
    UnsupportedParameter,
    UpstreamError,
    Usage,
)
from hub.llm.openai import tool_call_to_wire
from hub.services import openai_compat, providers, tool_groups, usage
from hub.services.toolkit import ToolDef

# How the loop's outcomes end a completion, in OpenAI's finish reasons.
FINISH = {"max_steps": "length"}


@dataclass
class Call:
    """One chat completion to run: who answers (``provider`` and ``request``), and, for an
    agent whose own tools run here, those tools and its step limit."""

    provider: GuardedProvider
    request: CompletionRequest
    model: str  # as the client named it
    agent_id: str | None = None
    stream: bool = False
    include_usage: bool = False
    own_tools: dict[str, ToolDef] = field(default_factory=dict)
    client_tools: list[ToolSpec] = field(default_factory=list)
    max_steps: int = 10
    skills: list[disclosure.Offer] = field(default_factory=list)  # offered to the agent
    id: str = field(default_factory=lambda: new_id("chatcmpl"))
    created: int = field(default_factory=lambda: int(time.time()))

    def account(self, status: str, used: Usage | None, started: float) -> None:
        """Record the call's usage (a database write: run it in a worker thread)."""
        usage.record(
            source="openai",
            provider=self.provider.id,
            model=self.request.model,
            status=status,
            prompt_tokens=used.prompt_tokens if used else 0,
            completion_tokens=used.completion_tokens if used else 0,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            agent_id=self.agent_id,
        )


def _resolve(model: str) -> tuple[GuardedProvider, str]:
    try:
        return providers.registry().resolve(model)
    except (NotFound, Unprocessable) as exc:
        raise openai_compat.model_not_found(model) from exc


def prepare(body: dict) -> Call:
    """Resolve the model and build the provider request, or refuse it (reads the agent: a
    worker thread)."""
    model = body["model"]
    messages = openai_compat.messages(body["messages"])
    client_tools = openai_compat.tools(body.get("tools"))
    temperature = body.get("temperature")
    max_tokens = body.get("max_tokens")
    agent = None
    own: dict[str, ToolDef] = {}
    skills: list[disclosure.Offer] = []
    if "/" in model:
        provider, name = _resolve(model)
    elif model == openai_compat.EMBEDDING_MODEL:
        raise UnsupportedParameter(
            "model", f"{model} is an embedding model: use /v1/embeddings.", code="unsupported_value"
        )
    else:
        agent = agents.get(model)
        if agent is None:
            raise openai_compat.model_not_found(model)
        if agent.status != "active":
            raise Conflict(f"Agent {model!r} is {agent.status}.", code="agent_not_active")
        provider, name = _resolve(agent.model)
        tools, skills = agent_toolset(agent)
        theirs = set(tool_groups.expand(agent.tools or [])) | set(tools)
        clash = sorted({t.name for t in client_tools} & theirs)
        if clash:
            raise openai_compat.invalid(
                "tools", f"{', '.join(clash)}: the agent {model!r} has tools of that name"
            )
        own = {name: tool for name, tool in tools.items() if not tool.requires_approval}
        if skills:
            messages.insert(0, ChatMessage(role="system", content=disclosure.context_text(skills)))
        if agent.system_prompt:
            messages.insert(0, ChatMessage(role="system", content=agent.system_prompt))
        temperature = agent.temperature if temperature is None else temperature
        if max_tokens is None and body.get("max_completion_tokens") is None:
            max_tokens = agent.max_tokens
    offered = [*own, *(t.name for t in client_tools)]
    options = openai_compat.options(body, offered)
    if own and options.get("n", 1) > 1:
        raise UnsupportedParameter(
            "n",
            f"The agent {model!r} runs its own tools; several choices would run them several "
            "times. Ask for one choice.",
            code="unsupported_value",
        )
    own_specs = [ToolSpec(t.name, t.description, t.parameters) for t in own.values()]
    request = CompletionRequest(
        model=name,
        messages=messages,
        temperature=temperature,
        max_tokens=max_tokens,
        tools=[*own_specs, *client_tools] or None,
        **options,
    )
    provider.check(request)
    return Call(
        provider,
        request,
        model,
        agent.id if agent else None,
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        own_tools=own,
        client_tools=client_tools,
        max_steps=agent.max_steps if agent else 1,
        skills=skills,
    )


# --- events ------------------------------------------------------------------------------


def passed_on(problem: Problem) -> Problem:
    """An upstream's refusal of the request (its 400, with OpenAI's error object) as this
    hub's 400 naming the same ``param``; any other problem as it is."""
    if not isinstance(problem, UpstreamError) or problem.upstream_status not in (400, 422):
        return problem
    error = problem.upstream_error or {}
    param = error.get("param")
    refused = BadRequest(
        f"The upstream refused the request: {error.get('message') or problem.detail}",
        errors=[{"field": f"body.{param}", "message": error.get("message") or ""}]
        if param
        else None,
        code=error.get("code") or "upstream_refused",
    )
    return refused


async def _provider_events(call: Call) -> AsyncIterator[StreamEvent]:
    started = time.perf_counter()
    try:
        async for event in call.provider.stream(call.request):
            if isinstance(event, StreamEnd):
                await asyncio.to_thread(call.account, "ok", event.usage, started)
            yield event
    except Problem as problem:
        await asyncio.to_thread(call.account, "error", None, started)
        raise passed_on(problem) from None


async def _loop_events(call: Call) -> AsyncIterator[StreamEvent]:
    """The agent loop's text as it comes, then the client's tool calls and the end."""
    queue: asyncio.Queue = asyncio.Queue()

    async def emit(event: dict) -> None:
        if event["type"] == "token":
            await queue.put(TokenDelta(event["text"]))

    owner = Owner(call.id, 1, call.agent_id, call.max_steps, trace_id=events.new_trace_id())
    options = {
        name: getattr(call.request, name)
        for name in (*openai_compat.OPTIONS, "stop")
        if getattr(call.request, name) is not None
    }
    loop = AgentLoop(
        owner=owner,
        provider=call.provider,
        model=call.request.model,
        tools=call.own_tools,
        temperature=call.request.temperature,
        max_tokens=call.request.max_tokens,
        emit=emit,
        client_tools=call.client_tools,
        options=options,
        skills=call.skills,
    )

    async def run() -> None:
        try:
            await queue.put(await loop.run(LoopState.start(call.request.messages)))
        except Exception as exc:
            await queue.put(exc)

    task = asyncio.ensure_future(run())
    try:
        while not isinstance(item := await queue.get(), Outcome | Exception):
            yield item
        await asyncio.to_thread(loop.flush)  # the usage rows of its model calls
        if isinstance(item, Problem):
            raise passed_on(item) from None
        if isinstance(item, Exception):
            raise item
        for tool_call in item.client_calls:
            yield ToolCallDelta(tool_call)
        finish = FINISH.get(item.finish_reason, item.finish_reason)
        yield StreamEnd(finish, Usage(loop.prompt_tokens, loop.completion_tokens))
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _events(call: Call) -> AsyncIterator[StreamEvent]:
    return _loop_events(call) if call.own_tools else _provider_events(call)


async def start(call: Call) -> AsyncIterator[StreamEvent]:
    """The call's events, the first one already there: a failure before the model said
    anything (refused, unreachable, its breaker open) is raised here, so it is answered
    with its own status rather than inside a stream that already said 200."""
    events_ = aiter(_events(call))
    try:
        first = await anext(events_)
    except StopAsyncIteration:
        first = None

    async def primed() -> AsyncIterator[StreamEvent]:
        async with contextlib.aclosing(events_):
            if first is not None:
                yield first
            async for event in events_:
                yield event

    return primed()


# --- answers -----------------------------------------------------------------------------


def _usage(used: Usage) -> dict:
    return {
        "prompt_tokens": used.prompt_tokens,
        "completion_tokens": used.completion_tokens,
        "total_tokens": used.total_tokens,
    }


async def complete(call: Call) -> dict:
    """The whole ``chat.completion``."""
    texts: dict[int, list[str]] = {i: [] for i in range(call.request.choices)}
    calls: dict[int, list[dict]] = {i: [] for i in range(call.request.choices)}
    end: StreamEnd | None = None
    async for event in _events(call):
        if isinstance(event, TokenDelta):
            texts.setdefault(event.index, []).append(event.text)
        elif isinstance(event, ToolCallDelta):
            calls.setdefault(event.index, []).append(tool_call_to_wire(event.call))
        elif isinstance(event, StreamEnd):
            end = event
    assert end is not None  # a stream without its end raised
    choices = []
    for index in sorted(texts.keys() | calls.keys()):
        text, tool_calls = "".join(texts.get(index, [])), calls.get(index, [])
        message: dict = {"role": "assistant", "content": text or (None if tool_calls else "")}
        if tool_calls:
            message["tool_calls"] = tool_calls
        message["refusal"] = None
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": end.reason(index),
            }
        )
    return {
        "id": call.id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": choices,
        "usage": _usage(end.usage),
    }


async def chunks(call: Call, events_: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` events in OpenAI's framing (``data:`` lines, ``[DONE]``);
    a tool call is two chunks, its id and name, then its arguments."""

    def data(choices: list[dict], **extra) -> bytes:
        body = {
            "id": call.id,
            "object": "chat.completion.chunk",
            "created": call.created,
            "model": call.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    def delta(index: int, fields: dict, finish: str | None = None) -> bytes:
        return data([{"index": index, "delta": fields, "logprobs": None, "finish_reason": finish}])

    called: dict[int, int] = {}
    for index in range(call.request.choices):
        yield delta(index, {"role": "assistant", "content": ""})
    try:
        async for event in events_:
            if isinstance(event, TokenDelta):
                yield delta(event.index, {"content": event.text})
            elif isinstance(event, ToolCallDelta):
                at = called[event.index] = called.get(event.index, -1) + 1
                wire = tool_call_to_wire(event.call)
                opening = {**wire, "function": {**wire["function"], "arguments": ""}}
                arguments = {"function": {"arguments": wire["function"]["arguments"]}}
                yield delta(event.index, {"tool_calls": [{"index": at, **opening}]})
                yield delta(event.index, {"tool_calls": [{"index": at, **arguments}]})
            elif isinstance(event, StreamEnd):
                for index in range(call.request.choices):
                    yield delta(index, {}, event.reason(index))
                if call.include_usage:
                    yield data([], usage=_usage(event.usage))
    except Problem as problem:
        yield b"data: " + json.dumps(openai_error(problem, None)).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
