"""The OpenAI-compatible API's models and embeddings, and its request shapes.

Models are the active agents (by id), every provider's models (``provider/model``) and, when
the ``semantic`` extra is installed, the embedding model. Chat completions themselves run in
:mod:`hub.engine.completions` (an agent's own tools run in its loop); what they read from
the request — messages, tools and the other parameters, checked the way OpenAI checks them
— is translated here, as 400s naming the ``param`` for what does not hold together.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from db import agents
from hub.core.problems import BadRequest, NotFound, ValidationFailed
from hub.llm import ChatMessage, ToolCall, ToolSpec, UnsupportedParameter, count_tokens
from hub.llm import embeddings as embedder
from hub.llm.openai import FORWARDED, parse_arguments
from hub.services import providers

EMBEDDING_MODEL = embedder.MODEL_NAME

# Request fields that go to the model as they are (CompletionRequest has a field for each):
# what an OpenAI upstream is sent, but temperature and max_tokens, which the agent's own
# settings may supply (see ``hub.engine.completions``).
OPTIONS = tuple(name for name in FORWARDED if name not in ("temperature", "max_tokens"))

# --- models ------------------------------------------------------------------------------


def _model(id: str, created: int, owned_by: str) -> dict:
    return {"id": id, "object": "model", "created": created, "owned_by": owned_by}


def _agent_model(agent: agents.Agent) -> dict:
    return _model(agent.id, int(agent.created_at.timestamp()), "aether-hub")


def list_models() -> dict:
    data = [
        _agent_model(agent) for agent in agents.listing(status="active").order_by(agents.Agent.id)
    ]
    for provider in providers.registry():
        data += [_model(f"{provider.id}/{name}", 0, provider.id) for name in provider.models()]
    if embedder.available():
        data.append(_model(EMBEDDING_MODEL, 0, "aether-hub"))
    return {"object": "list", "data": data}


def get_model(model: str) -> dict:
    """One model that :func:`list_models` lists, or 404 ``model_not_found``."""
    if "/" in model:
        provider_id, _, name = model.partition("/")
        if provider_id in providers.registry():
            provider = providers.registry().get(provider_id)
            if name in provider.models():
                return _model(model, 0, provider.id)
    elif model == EMBEDDING_MODEL:
        if embedder.available():
            return _model(model, 0, "aether-hub")
    else:
        agent = agents.get(model)
        if agent is not None and agent.status == "active":
            return _agent_model(agent)
    raise model_not_found(model)


def model_not_found(model: str) -> NotFound:
    return NotFound(f"The model {model!r} does not exist.", code="model_not_found")


# --- embeddings --------------------------------------------------------------------------


def create_embeddings(body: dict) -> dict:
    """Embed ``input`` with the semantic extra's model (blocking: a worker thread)."""
    if not embedder.available():
        raise _embeddings_unavailable(None)
    if body["model"] != EMBEDDING_MODEL:
        raise NotFound(
            f"The model {body['model']!r} does not exist; the embedding model is "
            f"{EMBEDDING_MODEL!r}.",
            code="model_not_found",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != embedder.DIMENSIONS:
        raise UnsupportedParameter(
            "dimensions",
            f"{EMBEDDING_MODEL} makes {embedder.DIMENSIONS} dimensions; it cannot shorten them.",
            code="unsupported_value",
        )
    texts = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
    try:
        vectors = embedder.embed(texts)
    except embedder.EmbeddingsUnavailable as exc:
        raise _embeddings_unavailable(str(exc)) from None
    as_base64 = body.get("encoding_format") == "base64"
    tokens = sum(count_tokens(text) for text in texts)
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": _base64(vector) if as_base64 else vector,
            }
            for index, vector in enumerate(vectors)
        ],
        "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _embeddings_unavailable(detail: str | None) -> BadRequest:
    message = str(embedder.EmbeddingsUnavailable(detail))
    return BadRequest(
        f"Embeddings are not available on this hub. {message}",
        errors=[{"field": "body.model", "message": "the semantic extra is not installed"}],
        code="embeddings_unavailable",
    )


def _base64(vector: list[float]) -> str:
    """Little-endian float32, base64-encoded: what OpenAI sends for ``encoding_format=base64``."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# --- chat completion requests --------------------------------------------------------------


def invalid(param: str, message: str) -> ValidationFailed:
    """A 400 for a request that does not hold together, naming ``param``."""
    return ValidationFailed(
        f"{param}: {message}", errors=[{"field": f"body.{param}", "message": message}]
    )


def _text(content: Any, at: int) -> str | None:
    if content is None or isinstance(content, str):
        return content
    for position, part in enumerate(content):
        if part.get("type") != "text":
            raise UnsupportedParameter(
                f"messages.{at}.content.{position}.type",
                f"Only text parts are supported, not {part.get('type')!r}.",
                code="unsupported_value",
            )
    return "".join(part.get("text", "") for part in content)


def messages(raw: list[dict]) -> list[ChatMessage]:
    """The conversation, with OpenAI's rules for tool calls: each ``tool`` message answers a
    call of the assistant message before it, and every call is answered before anything
    else is said."""
    out: list[ChatMessage] = []
    unanswered: list[str] = []
    asked_at = 0
    for at, message in enumerate(raw):
        role = message["role"]
        content = _text(message.get("content"), at)
        calls = None
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not call_id:
                raise invalid(f"messages.{at}.tool_call_id", "a tool message names the call")
            if call_id not in unanswered:
                raise invalid(
                    f"messages.{at}.tool_call_id",
                    f"{call_id!r} is not a call of the assistant message before it",
                )
            unanswered.remove(call_id)
            if content is None:
                raise invalid(f"messages.{at}.content", "a tool message carries the result")
        else:
            if unanswered:
                raise invalid(
                    f"messages.{asked_at}.tool_calls",
                    f"the calls {', '.join(unanswered)} have no tool message answering them",
                )
            if message.get("tool_calls"):
                if role != "assistant":
                    raise invalid(f"messages.{at}.tool_calls", "only assistant messages call")
                calls = [
                    ToolCall(
                        c["id"],
                        c["function"]["name"],
                        parse_arguments(c["function"].get("arguments")),
                    )
                    for c in message["tool_calls"]
                ]
                unanswered, asked_at = [c.id for c in calls], at
            elif content is None:
                raise invalid(f"messages.{at}.content", "required unless the message calls tools")
        out.append(
            ChatMessage(
                role="system" if role == "developer" else role,
                content=content,
                tool_calls=calls,
                tool_call_id=message.get("tool_call_id") if role == "tool" else None,
                name=message.get("name"),
            )
        )
    if unanswered:
        raise invalid(
            f"messages.{asked_at}.tool_calls",
            f"the calls {', '.join(unanswered)} have no tool message answering them",
        )
    return out


def tools(raw: list[dict] | None) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for at, tool in enumerate(raw or []):
        function = tool["function"]
        if any(spec.name == function["name"] for spec in specs):
            raise invalid(f"tools.{at}.function.name", f"{function['name']!r} is offered twice")
        specs.append(
            ToolSpec(
                function["name"],
                function.get("description", ""),
                function.get("parameters") or {"type": "object", "properties": {}},
                function.get("strict"),
            )
        )
    return specs


def options(body: dict, offered: list[str]) -> dict[str, Any]:
    """The request's other parameters as :class:`~hub.llm.CompletionRequest` fields, checked
    against the tools the model is offered (``offered``: the client's and the agent's)."""
    found = {name: body[name] for name in OPTIONS if body.get(name) is not None}
    stop = body.get("stop")
    if stop:
        found["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    choice = found.get("tool_choice")
    for name in ("tool_choice", "parallel_tool_calls"):
        if name in found and not offered:
            raise invalid(name, "only allowed when the model is offered tools")
    if isinstance(choice, dict) and choice["function"]["name"] not in offered:
        raise invalid(
            "tool_choice.function.name", f"{choice['function']['name']!r} is not an offered tool"
        )
    response_format = found.get("response_format")
    if response_format is not None:
        schema = response_format.get("json_schema")
        if (response_format["type"] == "json_schema") != (schema is not None):
            raise invalid(
                "response_format.json_schema", "required with the json_schema type, and only then"
            )
    return found
