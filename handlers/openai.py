"""The OpenAI-compatible API (`/v1`), for the official SDKs and other clients."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from hub.services import openai_compat


def list_models():
    """Active agents and provider models, as OpenAI models."""
    return openai_compat.list_models(), 200


async def create_chat_completion(body):
    """OpenAI-compatible chat completion, plain or streamed."""
    call = await run_in_threadpool(openai_compat.prepare, body)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            openai_compat.stream(call, include_usage=include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return await openai_compat.complete(call), 200, {"Content-Type": "application/json"}
