"""The OpenAI-compatible API, driven by the official ``openai`` package, unchanged."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import auth
from tests.factories import make_agent


@pytest.fixture
def sdk(client, keyring):
    """The official client, talking to the hub in-process through the test client."""
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=keyring["operator"], http_client=client
    )


def test_models_lists_active_agents_and_provider_models(client, sdk):
    make_agent(client, id="writer")
    make_agent(client, id="resting", status="paused")
    ids = [model.id for model in sdk.models.list()]
    assert ids == ["writer", "builtin/echo", "builtin/scripted"]


def test_plain_completion_with_a_provider_model(sdk):
    answer = sdk.chat.completions.create(
        model="builtin/echo", messages=[{"role": "user", "content": "hello hub"}]
    )
    assert answer.object == "chat.completion"
    assert answer.model == "builtin/echo"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Echo: hello hub"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_an_agent_model_applies_its_prompt(client, sdk):
    make_agent(client, id="poet", model="builtin/scripted", system_prompt="You rhyme.")
    answer = sdk.chat.completions.create(
        model="poet", messages=[{"role": "user", "content": "/reply roses are red"}]
    )
    assert answer.model == "poet"
    assert answer.choices[0].message.content == "roses are red"
    # the system prompt was sent: it counts in the prompt tokens
    bare = sdk.chat.completions.create(
        model="builtin/scripted", messages=[{"role": "user", "content": "/reply roses are red"}]
    )
    assert answer.usage.prompt_tokens > bare.usage.prompt_tokens


def test_streaming_gives_chunks_usage_and_done(sdk):
    stream = sdk.chat.completions.create(
        model="builtin/echo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_the_raw_stream_ends_with_done(client, keyring):
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "builtin/echo",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
        },
        headers=auth(keyring["operator"]),
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_errors_use_openais_shape(sdk, client):
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"
    assert missing.value.body["type"] == "not_found_error"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="builtin/echo", messages=[])
    assert bad.value.body["type"] == "invalid_request_error"
    raw = client.post("/v1/chat/completions", json={"model": "x"})
    assert raw.headers["content-type"] == "application/json"
    assert set(raw.json()) == {"error"}


def test_a_paused_agent_is_a_conflict(client, sdk):
    make_agent(client, id="napping", status="paused")
    with pytest.raises(openai.ConflictError) as paused:
        sdk.chat.completions.create(model="napping", messages=[{"role": "user", "content": "x"}])
    assert paused.value.body["code"] == "agent_not_active"


def test_provider_failures_map_to_upstream_errors(sdk):
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(
            model="builtin/scripted", messages=[{"role": "user", "content": "/error 500"}]
        )
    assert failed.value.status_code == 502
    with pytest.raises(openai.APIError, match="failed with status 500"):
        for _ in sdk.chat.completions.create(
            model="builtin/scripted",
            messages=[{"role": "user", "content": "/error 500"}],
            stream=True,
        ):
            pass


def test_a_wrong_key_is_an_authentication_error(client):
    stranger = openai.OpenAI(base_url="http://testserver/v1", api_key="nope", http_client=client)
    with pytest.raises(openai.AuthenticationError) as denied:
        stranger.models.list()
    assert denied.value.body["type"] == "authentication_error"


def test_a_viewer_can_list_models_but_not_complete(client, keyring):
    viewer = openai.OpenAI(
        base_url="http://testserver/v1", api_key=keyring["viewer"], http_client=client
    )
    assert viewer.models.list().data
    with pytest.raises(openai.PermissionDeniedError):
        viewer.chat.completions.create(
            model="builtin/echo", messages=[{"role": "user", "content": "x"}]
        )
