"""The OpenAI-compatible API, driven by the official ``openai`` package, unchanged."""

from __future__ import annotations

import datetime as dt
import json

import openai
import pytest

from hub.llm import embeddings
from tests.conftest import auth
from tests.factories import make_agent


@pytest.fixture
def sdk(client, keyring):
    """The official client, talking to the hub in-process through the test client (without
    its retries of 5xx answers, so each call is one request)."""
    return openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=keyring["operator"],
        http_client=client,
        max_retries=0,
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


# --- models ------------------------------------------------------------------------------


def test_retrieve_answers_any_listed_model(client, sdk):
    agent = make_agent(client, id="writer")
    assert sdk.models.retrieve("writer").model_dump(exclude_none=True) == {
        "id": "writer",
        "object": "model",
        "created": int(dt.datetime.fromisoformat(agent["created_at"].rstrip("Z")).timestamp()),
        "owned_by": "aether-hub",
    }
    # a provider model keeps its slash (the SDK sends it percent-encoded)
    assert sdk.models.retrieve("builtin/scripted").model_dump(exclude_none=True) == {
        "id": "builtin/scripted",
        "object": "model",
        "created": 0,
        "owned_by": "builtin",
    }


@pytest.mark.parametrize("model", ["nobody", "builtin/nothing", "nowhere/echo", "resting"])
def test_retrieve_of_an_unlisted_model_is_a_404_in_openais_shape(client, sdk, model):
    make_agent(client, id="resting", status="paused")
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve(model)
    assert missing.value.body == {
        "message": f"The model {model!r} does not exist.",
        "type": "not_found_error",
        "param": None,
        "code": "model_not_found",
        "request_id": missing.value.response.headers["x-request-id"],
    }


# --- tools and the tool round trip ---------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASK_WEATHER = '/tool get_weather {"city": "Paris"}\n/reply It is sunny in Paris.'


def answered(messages: list[dict], message, result: str = '{"sky": "clear"}') -> list[dict]:
    """The conversation with the assistant's tool calls and one result per call."""
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": result} for call in message.tool_calls
    ]
    return [*messages, message.model_dump(exclude_none=True), *results]


def streamed(chunks) -> tuple[dict[int, str], dict[int, list[dict]], dict[int, str]]:
    """Text, tool calls (assembled from their deltas by index) and finish reason per choice."""
    texts: dict[int, str] = {}
    calls: dict[int, dict[int, dict]] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            for frag in choice.delta.tool_calls or []:
                slot = calls.setdefault(choice.index, {}).setdefault(
                    frag.index, {"id": None, "name": "", "arguments": ""}
                )
                slot["id"] = slot["id"] or frag.id
                slot["name"] += frag.function.name or ""
                slot["arguments"] += frag.function.arguments or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    return texts, {i: [c[k] for k in sorted(c)] for i, c in calls.items()}, finishes


def test_the_tool_round_trip(sdk):
    messages = [{"role": "user", "content": ASK_WEATHER}]
    first = sdk.chat.completions.create(
        model="builtin/scripted", messages=messages, tools=[WEATHER]
    )
    [choice] = first.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    second = sdk.chat.completions.create(
        model="builtin/scripted", messages=answered(messages, choice.message), tools=[WEATHER]
    )
    assert second.choices[0].message.content == "It is sunny in Paris."
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].finish_reason == "stop"


def test_the_tool_round_trip_streamed(sdk):
    messages = [{"role": "user", "content": ASK_WEATHER}]
    chunks = list(
        sdk.chat.completions.create(
            model="builtin/scripted", messages=messages, tools=[WEATHER], stream=True
        )
    )
    texts, calls, finishes = streamed(chunks)
    assert (texts, finishes) == ({0: ""}, {0: "tool_calls"})
    assert calls == {0: [{"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]}
    # the SDK's own accumulator reads the same deltas
    with sdk.chat.completions.stream(
        model="builtin/scripted", messages=messages, tools=[WEATHER]
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert [(c.id, c.function.name) for c in message.tool_calls] == [("call_1", "get_weather")]

    reply = sdk.chat.completions.create(
        model="builtin/scripted",
        messages=answered(messages, message),
        tools=[WEATHER],
        stream=True,
    )
    assert streamed(reply)[0] == {0: "It is sunny in Paris."}


def test_several_tool_calls_in_one_answer(sdk):
    script = '/tool get_weather {"city": "Oslo"}\n/tool get_weather {"city": "Rome"}\n/reply ok'
    messages = [{"role": "user", "content": script}]
    first = sdk.chat.completions.create(
        model="builtin/scripted", messages=messages, tools=[WEATHER]
    )
    calls = first.choices[0].message.tool_calls
    assert [(c.id, json.loads(c.function.arguments)) for c in calls] == [
        ("call_1", {"city": "Oslo"}),
        ("call_2", {"city": "Rome"}),
    ]
    chunks = sdk.chat.completions.create(
        model="builtin/scripted", messages=messages, tools=[WEATHER], stream=True
    )
    assert [c["id"] for c in streamed(chunks)[1][0]] == ["call_1", "call_2"]
    final = sdk.chat.completions.create(
        model="builtin/scripted", messages=answered(messages, first.choices[0].message)
    )
    assert final.choices[0].message.content == "ok"


def bad_request(sdk, **kw) -> dict:
    kw.setdefault("model", "builtin/scripted")
    kw.setdefault("messages", [{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(**kw)
    body = refused.value.body
    assert body["type"] == "invalid_request_error"
    return {k: body[k] for k in ("param", "code")}


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "tool", "tool_call_id": "call_1", "content": "x"}], "messages.0.tool_call_id"),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_9", "content": "x"},
            ],
            "messages.2.tool_call_id",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "user", "content": "and?"},
            ],
            "messages.1.tool_calls",
        ),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [CALL]}],
            "messages.1.tool_calls",
        ),
        ([{"role": "user", "content": None}], "messages.0.content"),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": None},
            ],
            "messages.2.content",
        ),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "messages.0.content.0.type"),
    ],
    ids=[
        "no-call",
        "wrong-id",
        "unanswered",
        "unanswered-at-end",
        "no-content",
        "no-result",
        "image",
    ],
)
def test_a_conversation_that_does_not_hold_together_is_a_400(sdk, messages, param):
    assert bad_request(sdk, messages=messages)["param"] == param


def test_tool_choice(sdk):
    ask = [{"role": "user", "content": "/reply Just text.\n/tool get_weather"}]
    none = sdk.chat.completions.create(
        model="builtin/scripted", messages=ask, tools=[WEATHER], tool_choice="none"
    )
    assert none.choices[0].message.model_dump(exclude_none=True) == {
        "role": "assistant",
        "content": "Just text.",
    }
    named = {"type": "function", "function": {"name": "get_weather"}}
    forced = sdk.chat.completions.create(
        model="builtin/scripted", messages=ask, tools=[WEATHER], tool_choice=named
    )
    assert forced.choices[0].finish_reason == "tool_calls"
    refused = {"param": "tool_choice", "code": "unsupported_value"}
    assert bad_request(sdk, model="builtin/echo", tools=[WEATHER], tool_choice="required") == (
        refused
    )
    other = {"type": "function", "function": {"name": "elsewhere"}}
    assert bad_request(sdk, tools=[WEATHER], tool_choice=other)["param"] == (
        "tool_choice.function.name"
    )
    assert bad_request(sdk, tool_choice="auto")["param"] == "tool_choice"
    assert bad_request(sdk, parallel_tool_calls=True)["param"] == "parallel_tool_calls"
    assert bad_request(sdk, tools=[WEATHER, WEATHER])["param"] == "tools.1.function.name"


def test_parallel_tool_calls_false(sdk):
    two = [{"role": "user", "content": "/tool get_weather\n/tool get_weather"}]
    assert bad_request(sdk, messages=two, tools=[WEATHER], parallel_tool_calls=False) == {
        "param": "parallel_tool_calls",
        "code": "unsupported_value",
    }
    one = [{"role": "user", "content": "/tool get_weather"}]
    answer = sdk.chat.completions.create(
        model="builtin/scripted", messages=one, tools=[WEATHER], parallel_tool_calls=False
    )
    assert len(answer.choices[0].message.tool_calls) == 1


# --- response_format, n, stop and the sampling parameters -----------------------------------


def test_response_format_json_is_honoured_or_refused(sdk):
    reply = [{"role": "user", "content": '/reply {"city": "Paris", "sunny": true}'}]
    for stream in (False, True):
        answer = sdk.chat.completions.create(
            model="builtin/scripted",
            messages=reply,
            response_format={"type": "json_object"},
            stream=stream,
        )
        text = streamed(answer)[0][0] if stream else answer.choices[0].message.content
        assert json.loads(text) == {"city": "Paris", "sunny": True}
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    fits = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema}}
    answer = sdk.chat.completions.create(
        model="builtin/scripted", messages=reply, response_format=fits
    )
    assert json.loads(answer.choices[0].message.content)["city"] == "Paris"

    refused = {"param": "response_format", "code": "unsupported_value"}
    for stream in (False, True):  # refused before the stream starts: a plain 400
        assert (
            bad_request(
                sdk, model="builtin/echo", response_format={"type": "json_object"}, stream=stream
            )
            == refused
        )
    strict = {**schema, "properties": {"city": {"type": "integer"}}}
    misfit = {"type": "json_schema", "json_schema": {"name": "weather", "schema": strict}}
    assert bad_request(sdk, messages=reply, response_format=misfit) == refused
    assert bad_request(sdk, response_format={"type": "json_schema"})["param"] == (
        "response_format.json_schema"
    )


def test_n_gives_n_choices(sdk):
    hello = [{"role": "user", "content": "hello"}]
    one = sdk.chat.completions.create(model="builtin/echo", messages=hello)
    three = sdk.chat.completions.create(model="builtin/echo", messages=hello, n=3)
    assert [(c.index, c.message.content, c.finish_reason) for c in three.choices] == [
        (i, "Echo: hello", "stop") for i in range(3)
    ]
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    chunks = sdk.chat.completions.create(model="builtin/echo", messages=hello, n=2, stream=True)
    texts, _, finishes = streamed(chunks)
    assert (texts, finishes) == ({0: "Echo: hello", 1: "Echo: hello"}, {0: "stop", 1: "stop"})


def test_stop_ends_the_answer_before_the_sequence(sdk):
    words = [{"role": "user", "content": "/reply one two three four"}]
    answer = sdk.chat.completions.create(model="builtin/scripted", messages=words, stop=" three")
    assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == (
        "one two",
        "stop",
    )
    chunks = sdk.chat.completions.create(
        model="builtin/scripted", messages=words, stop=["four", "wo"], stream=True
    )
    assert streamed(chunks)[0] == {0: "one t"}


def test_sampling_parameters_are_honoured_by_the_deterministic_models(sdk):
    hello = [{"role": "user", "content": "hello"}]
    plain = sdk.chat.completions.create(model="builtin/echo", messages=hello)
    tuned = sdk.chat.completions.create(
        model="builtin/echo",
        messages=hello,
        temperature=1.5,
        top_p=0.2,
        frequency_penalty=1,
        presence_penalty=-1,
        seed=1234,
        user="end-user-42",
        max_completion_tokens=100,
    )
    assert tuned.choices[0].message.content == plain.choices[0].message.content
    assert bad_request(sdk, logit_bias={"50256": -100}) == {
        "param": "logit_bias",
        "code": "unsupported_parameter",
    }
    short = sdk.chat.completions.create(
        model="builtin/echo", messages=hello, max_completion_tokens=2
    )
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == (
        "Echo: ",
        "length",
    )


def test_a_parameter_this_hub_does_not_know_is_refused_by_name(sdk):
    assert bad_request(sdk, logprobs=True)["param"] == "logprobs"
    assert bad_request(sdk, extra_body={"reasoning_effort": "low"})["param"] == ("reasoning_effort")


# --- an agent as the model: its tools run here, the client's go back ------------------------


def test_an_agents_own_tools_run_in_the_hub_and_the_clients_go_back(client, sdk):
    make_agent(client, id="helper", model="builtin/scripted", tools=["current_time"])
    script = '/tool current_time {}\n/tool get_weather {"city": "Oslo"}\n/reply Noted.'
    messages = [{"role": "user", "content": script}]
    first = sdk.chat.completions.create(model="helper", messages=messages, tools=[WEATHER])
    [call] = first.choices[0].message.tool_calls
    assert (call.id, call.function.name, first.choices[0].finish_reason) == (
        "call_2",
        "get_weather",
        "tool_calls",
    )
    [execution] = client.get("/api/v1/tool-executions").json()["items"]
    assert (execution["tool"], execution["status"]) == ("current_time", "ok")
    assert execution["caller"] == f"openai:{first.id}"

    second = sdk.chat.completions.create(
        model="helper", messages=answered(messages, first.choices[0].message), tools=[WEATHER]
    )
    assert second.choices[0].message.content == "Noted."
    usage = client.get("/api/v1/usage/agents").json()["items"]
    assert [(u["agent_id"], u["calls"]) for u in usage] == [("helper", 2)]


def test_an_agents_tools_streamed(client, sdk):
    make_agent(client, id="helper", model="builtin/scripted", tools=["current_time"])
    script = "/reply Let me look.\n/tool current_time {}\n/reply It is late.\n/tool get_weather"
    messages = [{"role": "user", "content": script}]
    chunks = list(
        sdk.chat.completions.create(model="helper", messages=messages, tools=[WEATHER], stream=True)
    )
    texts, calls, finishes = streamed(chunks)
    assert texts == {0: "Let me look.It is late."}
    assert [c["name"] for c in calls[0]] == ["get_weather"]
    assert finishes == {0: "tool_calls"}
    answer = sdk.chat.completions.create(model="helper", messages=messages)  # no client tools
    assert answer.choices[0].message.content == "Let me look.It is late."
    assert answer.choices[0].finish_reason == "stop"  # get_weather: "no tool named", in the loop


def test_an_agents_rules_for_client_tools(client, sdk):
    make_agent(client, id="helper", model="builtin/scripted", tools=["current_time"])
    clash = {**WEATHER, "function": {**WEATHER["function"], "name": "current_time"}}
    assert bad_request(sdk, model="helper", tools=[clash])["param"] == "tools"
    assert bad_request(sdk, model="helper", n=2) == {"param": "n", "code": "unsupported_value"}
    # an agent without tools of its own is its model: n works
    make_agent(client, id="plain", model="builtin/echo")
    answer = sdk.chat.completions.create(
        model="plain", messages=[{"role": "user", "content": "x"}], n=2, tools=[WEATHER]
    )
    assert len(answer.choices) == 2


def test_an_agents_tools_that_need_approval_are_not_offered(client, sdk):
    make_agent(
        client, id="helper", model="builtin/scripted", tools=["current_time", "http_request"]
    )
    script = '/tool http_request {"url": "https://example.com"}\n/reply Could not.'
    answer = sdk.chat.completions.create(
        model="helper", messages=[{"role": "user", "content": script}]
    )
    assert answer.choices[0].message.content == "Could not."
    assert client.get("/api/v1/approvals").json()["items"] == []
    assert client.get("/api/v1/tool-executions").json()["items"] == []


# --- embeddings ----------------------------------------------------------------------------


@pytest.mark.skipif(embeddings.available(), reason="the semantic extra is installed")
def test_embeddings_without_the_extra_are_a_400_saying_how_to_install_it(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model=embeddings.MODEL_NAME, input="hello")
    body = refused.value.body
    assert (body["param"], body["code"]) == ("model", "embeddings_unavailable")
    assert "pip install -e '.[semantic]'" in body["message"]
    assert embeddings.MODEL_NAME not in [m.id for m in sdk.models.list()]


@pytest.fixture
def fake_embedder(monkeypatch):
    """The semantic extra's interface, without torch: vector i of a call is [i, 0.5, -1, …]."""
    monkeypatch.setattr(embeddings, "available", lambda: True)
    monkeypatch.setattr(
        embeddings,
        "embed",
        lambda texts: [[float(i), 0.5, -1.0] + [0.0] * 381 for i, _ in enumerate(texts)],
    )


def test_embeddings_in_both_encodings(sdk, fake_embedder):
    # the SDK asks for base64 by default and decodes it
    answer = sdk.embeddings.create(model=embeddings.MODEL_NAME, input=["a", "b c"])
    assert [(d.index, d.embedding[:3]) for d in answer.data] == [
        (0, [0, 0.5, -1]),
        (1, [1, 0.5, -1]),
    ]
    assert len(answer.data[0].embedding) == embeddings.DIMENSIONS
    assert (answer.model, answer.usage.prompt_tokens, answer.usage.total_tokens) == (
        embeddings.MODEL_NAME,
        3,
        3,
    )
    floats = sdk.embeddings.create(model=embeddings.MODEL_NAME, input="a", encoding_format="float")
    assert floats.data[0].embedding[:3] == [0, 0.5, -1]
    assert sdk.models.retrieve(embeddings.MODEL_NAME).owned_by == "aether-hub"


def test_embeddings_refuse_what_the_model_cannot_do(sdk, fake_embedder):
    with pytest.raises(openai.BadRequestError) as shorter:
        sdk.embeddings.create(model=embeddings.MODEL_NAME, input="a", dimensions=64)
    assert (shorter.value.body["param"], shorter.value.body["code"]) == (
        "dimensions",
        "unsupported_value",
    )
    with pytest.raises(openai.BadRequestError) as tokens:
        sdk.embeddings.create(model=embeddings.MODEL_NAME, input=[[1, 2, 3]])
    assert tokens.value.body["param"].startswith("input")
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="text-embedding-3-small", input="a")
    with pytest.raises(openai.BadRequestError) as chat:
        sdk.chat.completions.create(
            model=embeddings.MODEL_NAME, messages=[{"role": "user", "content": "x"}]
        )
    assert chat.value.body["param"] == "model"


@pytest.mark.skipif(not embeddings.available(), reason="needs the semantic extra")
def test_embeddings_from_the_real_model(sdk):
    answer = sdk.embeddings.create(model=embeddings.MODEL_NAME, input=["a cat", "a kitten"])
    first, second = (d.embedding for d in answer.data)
    assert len(first) == embeddings.DIMENSIONS
    assert embeddings.cosine(first, second) > 0.5


def test_a_viewer_reads_models_but_neither_embeds_nor_completes(client, keyring):
    viewer = openai.OpenAI(
        base_url="http://testserver/v1", api_key=keyring["viewer"], http_client=client
    )
    assert viewer.models.retrieve("builtin/echo").id == "builtin/echo"
    with pytest.raises(openai.PermissionDeniedError):
        viewer.embeddings.create(model=embeddings.MODEL_NAME, input="x")
