"""The OpenAI-compatible API with a second hub as the upstream: the official ``openai`` SDK
talks to this hub, whose provider ``up`` (kind ``openai``) is a real ``aether serve`` in a
subprocess, serving its own builtin models on its ``/v1``. What this hub forwards is checked
by that hub against the same contract, so a parameter sent in the wrong shape, or one it does
not know, would be refused there; what it cannot honour comes back as a 400 naming it.
"""

from __future__ import annotations

import json

import openai
import pytest

from hub.llm import embeddings
from tests.handlers.test_openai import WEATHER, answered, streamed
from tests.servers import TOKEN, Processes, hub_env

pytestmark = pytest.mark.slow  # a hub process: make test runs these, make test-fast does not


@pytest.fixture(scope="module")
def upstream_hub(tmp_path_factory):
    """The second hub (SQLite in its own data folder), for the whole module; its URL."""
    data = tmp_path_factory.mktemp("upstream-hub")
    hubs = Processes()
    try:
        yield hubs.serve(hub_env(f"sqlite:///{data / 'aether.db'}", data))
    finally:
        hubs.stop_all()


@pytest.fixture
def sdk(client, keyring, upstream_hub):
    """The official client on this hub, with the upstream hub configured as provider ``up``."""
    provider = {
        "kind": "openai",
        "base_url": f"{upstream_hub}/v1",
        "api_key": TOKEN,
        "models": ["builtin/echo", "builtin/scripted"],
    }
    response = client.put("/api/v1/providers/up", json=provider)
    assert response.status_code == 201, response.text
    return openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=keyring["operator"],
        http_client=client,
        max_retries=0,
    )


def refusal(sdk, **kw) -> dict:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(**kw)
    return {k: refused.value.body[k] for k in ("type", "param", "code")}


SCRIPTED = "up/builtin/scripted"
ASK = '/tool get_weather {"city": "Oslo"}\n/reply Sunny in Oslo.'


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_the_tool_round_trip_through_an_upstream(sdk, stream):
    messages = [{"role": "user", "content": ASK}]
    if stream:
        with sdk.chat.completions.stream(model=SCRIPTED, messages=messages, tools=[WEATHER]) as s:
            first = s.get_final_completion()
    else:
        first = sdk.chat.completions.create(model=SCRIPTED, messages=messages, tools=[WEATHER])
    [choice] = first.choices
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content  # null, or "" as the streamed role delta began it
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name) == ("call_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Oslo"}

    follow_up = answered(messages, choice.message)
    reply = sdk.chat.completions.create(
        model=SCRIPTED, messages=follow_up, tools=[WEATHER], stream=stream
    )
    text = streamed(reply)[0][0] if stream else reply.choices[0].message.content
    assert text == "Sunny in Oslo."


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_every_parameter_reaches_the_upstream_and_is_honoured_there(sdk, stream):
    answer = sdk.chat.completions.create(
        model=SCRIPTED,
        messages=[{"role": "user", "content": '/reply {"city": "Oslo"} END and more'}],
        n=2,
        stop=[" END"],
        response_format={"type": "json_object"},
        tools=[WEATHER],
        tool_choice="none",
        parallel_tool_calls=False,
        temperature=0.5,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=0.5,
        seed=7,
        logit_bias={},
        user="end-user-7",
        max_completion_tokens=50,
        stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    if stream:
        chunks = list(answer)
        texts, calls, finishes = streamed(chunks)
        usage = chunks[-1].usage
    else:
        texts = {c.index: c.message.content for c in answer.choices}
        calls = {c.index: c.message.tool_calls for c in answer.choices if c.message.tool_calls}
        finishes = {c.index: c.finish_reason for c in answer.choices}
        usage = answer.usage
    assert texts == {0: '{"city": "Oslo"}', 1: '{"city": "Oslo"}'}  # n and stop, upstream
    assert (calls, finishes) == ({}, {0: "stop", 1: "stop"})
    assert usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_what_the_upstream_cannot_honour_is_a_400_naming_it(sdk, stream):
    hello = [{"role": "user", "content": "hello"}]
    cases = [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"tools": [WEATHER], "tool_choice": "required"}, "tool_choice"),
    ]
    for params, param in cases:
        refused = refusal(sdk, model="up/builtin/echo", messages=hello, stream=stream, **params)
        assert refused["type"] == "invalid_request_error"
        assert refused["param"] == param, params


def test_json_schema_and_a_forced_tool_through_an_upstream(sdk):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    answer = sdk.chat.completions.create(
        model=SCRIPTED,
        messages=[{"role": "user", "content": '/reply {"city": "Oslo"}'}],
        response_format=fmt,
    )
    assert json.loads(answer.choices[0].message.content) == {"city": "Oslo"}
    forced = sdk.chat.completions.create(
        model=SCRIPTED,
        messages=[{"role": "user", "content": ASK}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert forced.choices[0].message.tool_calls[0].function.name == "get_weather"


def reply_of(answer, stream: bool) -> tuple[str, list[str], str]:
    """Text, tool names and finish reason of the first choice, streamed or not."""
    if stream:
        texts, calls, finishes = streamed(answer)
        return texts[0], [c["name"] for c in calls.get(0, [])], finishes[0]
    choice = answer.choices[0]
    names = [c.function.name for c in choice.message.tool_calls or []]
    return choice.message.content, names, choice.finish_reason


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_agent_on_an_upstream_model_runs_its_tools_and_hands_back_the_clients(
    client, sdk, stream
):
    agent = {"id": "relay", "name": "Relay", "model": SCRIPTED, "tools": ["current_time"]}
    assert client.post("/api/v1/agents", json=agent).status_code == 201
    both = '/tool current_time {}\n/tool get_weather {"city": "Oslo"}\n/reply Noted.'
    messages = [{"role": "user", "content": both}]
    answer = sdk.chat.completions.create(
        model="relay", messages=messages, tools=[WEATHER], stream=stream
    )
    assert reply_of(answer, stream) == (None if not stream else "", ["get_weather"], "tool_calls")
    [execution] = client.get("/api/v1/tool-executions").json()["items"]
    assert execution["tool"] == "current_time" and execution["caller"].startswith("openai:")

    # "required" forces the first model call only: the upstream would refuse it for the
    # second call, whose turn calls no tool
    forced = sdk.chat.completions.create(
        model="relay",
        messages=[{"role": "user", "content": "/tool current_time {}\n/reply Checked."}],
        tool_choice="required",
        stream=stream,
    )
    assert reply_of(forced, stream) == ("Checked.", [], "stop")


def test_the_upstream_hubs_own_models_and_embeddings_over_http(upstream_hub):
    """The second hub answers the SDK directly too, over a real socket (uvicorn decodes the
    percent-encoded slash of a provider model's id)."""
    remote = openai.OpenAI(base_url=f"{upstream_hub}/v1", api_key=TOKEN, max_retries=0)
    assert remote.models.retrieve("builtin/scripted").owned_by == "builtin"
    with pytest.raises(openai.NotFoundError):
        remote.models.retrieve("builtin/nothing")
    if embeddings.available():
        answer = remote.embeddings.create(model=embeddings.MODEL_NAME, input="hello")
        assert len(answer.data[0].embedding) == embeddings.DIMENSIONS
    else:
        with pytest.raises(openai.BadRequestError) as refused:
            remote.embeddings.create(model=embeddings.MODEL_NAME, input="hello")
        assert refused.value.body["code"] == "embeddings_unavailable"


def test_models_of_the_upstream_are_listed_and_retrieved(sdk):
    ids = [model.id for model in sdk.models.list()]
    assert {"up/builtin/echo", "up/builtin/scripted"} <= set(ids)
    assert sdk.models.retrieve("up/builtin/echo").owned_by == "up"
