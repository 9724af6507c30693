"""The OpenAI-compatible API (`/v1`), for the official SDKs and other clients."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from hub.engine import completions
from hub.services import openai_compat


def list_models():
    """Active agents and provider models, as OpenAI models."""
    return openai_compat.list_models(), 200


def retrieve_model(model):
    """One model, as an OpenAI model."""
    return openai_compat.get_model(model), 200


async def create_chat_completion(body):
    """OpenAI-compatible chat completion, plain or streamed."""
    call = await run_in_threadpool(completions.prepare, body)
    if call.stream:
        return StreamingResponse(
            completions.chunks(call, await completions.start(call)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return await completions.complete(call), 200, {"Content-Type": "application/json"}


def create_embedding(body):
    """OpenAI-compatible embeddings from the semantic extra's model."""
    return openai_compat.create_embeddings(body), 200
