"""The OpenAI-compatible API: agents and provider models as models, chat completions.

Stateless (nothing is stored but the audit entry): ``model`` is an agent id, whose system
prompt, temperature and max_tokens apply, or ``provider/model``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from db import agents
from db.base import new_id
from hub.core.problems import Conflict, NotFound, Problem, openai_error
from hub.llm import (
    ChatMessage,
    CompletionRequest,
    GuardedProvider,
    StreamEnd,
    TokenDelta,
    Usage,
    collect,
)
from hub.services import providers, usage


@dataclass
class Call:
    provider: GuardedProvider
    request: CompletionRequest
    model: str  # as the client named it
    agent_id: str | None = None

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


def list_models() -> dict:
    data = [
        {
            "id": agent.id,
            "object": "model",
            "created": int(agent.created_at.timestamp()),
            "owned_by": "aether-hub",
        }
        for agent in agents.listing(status="active").order_by(agents.Agent.id)
    ]
    for provider in providers.registry():
        data += [
            {
                "id": f"{provider.id}/{name}",
                "object": "model",
                "created": 0,
                "owned_by": provider.id,
            }
            for name in provider.models()
        ]
    return {"object": "list", "data": data}


def _text(content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def prepare(body: dict) -> Call:
    """Resolve the model and build the provider request (reads the agent: a worker thread)."""
    model = body["model"]
    registry = providers.registry()
    messages = [
        ChatMessage(
            role="system" if m["role"] == "developer" else m["role"],
            content=_text(m.get("content")),
            tool_call_id=m.get("tool_call_id"),
            name=m.get("name"),
        )
        for m in body["messages"]
    ]
    temperature = body.get("temperature")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    try:
        if "/" in model:
            provider, name = registry.resolve(model)
        else:
            agent = agents.get(model)
            if agent is None:
                raise NotFound(f"The model {model!r} does not exist.", code="model_not_found")
            if agent.status != "active":
                raise Conflict(f"Agent {model!r} is {agent.status}.", code="agent_not_active")
            provider, name = registry.resolve(agent.model)
            if agent.system_prompt:
                messages.insert(0, ChatMessage(role="system", content=agent.system_prompt))
            temperature = agent.temperature if temperature is None else temperature
            max_tokens = max_tokens or agent.max_tokens
    except NotFound as exc:
        if exc.code == "model_not_found":
            raise
        raise NotFound(f"The model {model!r} does not exist.", code="model_not_found") from exc
    request = CompletionRequest(
        model=name, messages=messages, temperature=temperature, max_tokens=max_tokens
    )
    return Call(provider, request, model, None if "/" in model else model)


def _usage(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


async def complete(call: Call) -> dict:
    started = time.perf_counter()
    try:
        result = await collect(call.provider.stream(call.request))
    except Problem:
        await asyncio.to_thread(call.account, "error", None, started)
        raise
    await asyncio.to_thread(call.account, "ok", result.usage, started)
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.content},
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": _usage(result.usage),
    }


async def stream(call: Call, *, include_usage: bool) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` events in OpenAI's framing (``data:`` lines, ``[DONE]``)."""
    completion_id, created = new_id("chatcmpl"), int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": call.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    started = time.perf_counter()
    yield chunk({"role": "assistant", "content": ""})
    try:
        async for event in call.provider.stream(call.request):
            if isinstance(event, TokenDelta):
                yield chunk({"content": event.text})
            elif isinstance(event, StreamEnd):
                await asyncio.to_thread(call.account, "ok", event.usage, started)
                yield chunk({}, event.finish_reason)
                if include_usage:
                    usage_chunk = json.loads(chunk({})[6:])
                    usage_chunk.update(choices=[], usage=_usage(event.usage))
                    yield b"data: " + json.dumps(usage_chunk).encode() + b"\n\n"
    except Problem as problem:
        await asyncio.to_thread(call.account, "error", None, started)
        yield b"data: " + json.dumps(openai_error(problem, None)).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
