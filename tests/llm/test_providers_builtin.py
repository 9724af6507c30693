"""The builtin provider: ``echo`` and ``scripted`` (the directive syntax others rely on),
plus the interface's shared pieces (token counting, collecting a stream)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from hub.core.problems import ProviderError, ProviderTimeout
from hub.llm import (
    BuiltinProvider,
    ChatMessage,
    Completion,
    CompletionRequest,
    Provider,
    StreamEnd,
    TokenDelta,
    ToolCall,
    ToolCallDelta,
    UnsupportedParameter,
    UpstreamError,
    UpstreamTimeout,
    Usage,
    builtin,
    collect,
    count_tokens,
)


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def request(model: str, *messages: ChatMessage, **kw) -> CompletionRequest:
    return CompletionRequest(model, list(messages), **kw)


def events(req: CompletionRequest) -> list:
    async def gather() -> list:
        return [event async for event in BuiltinProvider().stream(req)]

    return asyncio.run(gather())


def complete(req: CompletionRequest) -> Completion:
    return asyncio.run(BuiltinProvider().complete(req))


def failure(req: CompletionRequest) -> tuple[list, Exception]:
    """The events a failing stream yielded before it raised, and what it raised."""
    seen: list = []

    async def run() -> None:
        async for event in BuiltinProvider().stream(req):
            seen.append(event)

    with pytest.raises(Exception) as info:
        asyncio.run(run())
    return seen, info.value


def text_of(evts: list) -> str:
    return "".join(e.text for e in evts if isinstance(e, TokenDelta))


def calls_of(evts: list) -> list[ToolCall]:
    return [e.call for e in evts if isinstance(e, ToolCallDelta)]


# --- shared pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, world!", 4),
        ("", 0),
        (None, 0),
        ("   \n\t ", 0),
        ("one two  three", 3),
        ('{"a": 1}', 7),
        ("naïve café", 2),
    ],
)
def test_count_tokens_counts_words_and_punctuation(text, expected):
    assert count_tokens(text) == expected


def test_count_tokens_is_deterministic_and_additive_across_whitespace():
    assert count_tokens("alpha beta, gamma") == count_tokens("alpha ") + count_tokens("beta, gamma")
    assert count_tokens("x" * 1000) == 1


def test_the_builtin_provider_is_a_provider():
    provider = BuiltinProvider("local")
    assert isinstance(provider, Provider)
    assert (provider.id, provider.kind) == ("local", "builtin")
    assert provider.models() == ["echo", "scripted"]
    assert asyncio.run(provider.list_models()) == ["echo", "scripted"]
    assert repr(provider) == "BuiltinProvider(id='local')"


def test_message_defaults():
    message = ChatMessage("user", "hi")
    assert (message.tool_calls, message.tool_call_id, message.name) == (None, None, None)
    req = CompletionRequest("echo", [message])
    assert (req.temperature, req.max_tokens, req.tools) == (None, None, None)
    assert Usage(3, 4).total_tokens == 7


def test_collect_refuses_a_stream_without_its_end():
    async def broken():
        yield TokenDelta("half")

    with pytest.raises(UpstreamError) as info:
        asyncio.run(collect(broken()))
    assert info.value.status == 502


# --- echo ------------------------------------------------------------------------------------


def test_echo_streams_the_reply_token_by_token():
    evts = events(request("echo", user("hello there, world")))
    assert evts[:-1] == [
        TokenDelta("Echo: "),
        TokenDelta("hello "),
        TokenDelta("there, "),
        TokenDelta("world"),
    ]
    assert evts[-1] == StreamEnd("stop", Usage(prompt_tokens=4, completion_tokens=6))


@pytest.mark.parametrize(
    "text", ["  leading", "trailing  ", "two\nlines\n\n", "tabs\tand  spaces", "", "x"]
)
def test_echo_deltas_join_to_the_reply_exactly(text):
    evts = events(request("echo", user(text)))
    assert text_of(evts) == "Echo: " + text
    assert all(e.text for e in evts if isinstance(e, TokenDelta))


def test_echo_answers_the_latest_user_message():
    evts = events(
        request(
            "echo",
            ChatMessage("system", "Be brief."),
            user("first"),
            ChatMessage("assistant", "Echo: first"),
            user("second"),
        )
    )
    assert text_of(evts) == "Echo: second"
    # prompt tokens count every message's content: 3 + 1 + 3 + 1
    assert evts[-1].usage == Usage(8, 3)


def test_echo_without_a_user_message_echoes_nothing():
    assert text_of(events(request("echo", ChatMessage("system", "x")))) == "Echo: "


def test_echo_ignores_directives():
    assert text_of(events(request("echo", user("/reply hi")))) == "Echo: /reply hi"


def test_unknown_model_fails_like_an_upstream_404():
    seen, exc = failure(request("gpt-9", user("hi")))
    assert seen == []
    assert isinstance(exc, UpstreamError)
    assert (exc.status, exc.upstream_status) == (502, 404)
    assert "gpt-9" in exc.detail


# --- scripted: replies -----------------------------------------------------------------------


def test_scripted_reply_is_streamed_token_by_token():
    evts = events(request("scripted", user("/reply The answer is 42.")))
    assert [e.text for e in evts[:-1]] == ["The ", "answer ", "is ", "42."]
    assert evts[-1].finish_reason == "stop"


def test_several_replies_join_with_a_newline():
    evts = events(request("scripted", user("/reply one\n/reply two three")))
    assert text_of(evts) == "one\ntwo three"


def test_directives_may_be_indented_and_plain_lines_are_ignored_beside_them():
    evts = events(request("scripted", user("Please answer:\n   /reply yes\nthanks")))
    assert text_of(evts) == "yes"


def test_scripted_without_directives_behaves_like_echo():
    assert text_of(events(request("scripted", user("just chatting")))) == "Echo: just chatting"


@pytest.mark.parametrize(
    "line",
    [
        "/tool lookup {not json",
        "/tool lookup [1, 2]",
        "/tool",
        "/sleep soon",
        "/sleep -5",
        "/error abc",
        "/error 200",
        "/error 5000",
        "/frobnicate now",
        "/replying",
    ],
)
def test_invalid_directives_are_plain_text(line):
    alone = events(request("scripted", user(line)))
    assert text_of(alone) == "Echo: " + line
    assert calls_of(alone) == []
    beside = events(request("scripted", user(f"{line}\n/reply ok")))
    assert text_of(beside) == "ok"


# --- scripted: tools -------------------------------------------------------------------------


def test_a_tool_line_makes_the_turn_a_tool_call():
    evts = events(request("scripted", user('/tool lookup {"q": "weather", "days": 2}')))
    assert evts[:-1] == [ToolCallDelta(ToolCall("call_1", "lookup", {"q": "weather", "days": 2}))]
    end = evts[-1]
    assert end.finish_reason == "tool_calls"
    assert end.usage.completion_tokens == count_tokens(json.dumps({"q": "weather", "days": 2}))


def test_several_tool_lines_make_several_calls_in_order():
    evts = events(request("scripted", user('/tool a {"n": 1}\n/tool b\n/tool c {"n": 3}')))
    assert calls_of(evts) == [
        ToolCall("call_1", "a", {"n": 1}),
        ToolCall("call_2", "b", {}),
        ToolCall("call_3", "c", {"n": 3}),
    ]
    assert evts[-1].finish_reason == "tool_calls"


SCRIPT = "\n".join(
    [
        "/reply Let me check.",
        '/tool lookup {"q": 1}',
        "/tool clock",
        "/reply It is sunny.",
        "/tool log",
        "/reply Done.",
    ]
)


def conversation(rounds: int) -> list[ChatMessage]:
    """The message list after ``rounds`` tool rounds of SCRIPT were answered."""
    messages = [ChatMessage("system", "sys"), user(SCRIPT)]
    groups = [
        [ToolCall("call_1", "lookup", {"q": 1}), ToolCall("call_2", "clock", {})],
        [ToolCall("call_3", "log", {})],
    ]
    for calls in groups[:rounds]:
        messages.append(ChatMessage("assistant", None, tool_calls=calls))
        messages += [ChatMessage("tool", "result", tool_call_id=c.id, name=c.name) for c in calls]
    return messages


def test_after_tool_results_the_script_goes_on_with_the_remaining_directives():
    first = events(CompletionRequest("scripted", conversation(0)))
    assert text_of(first) == "Let me check."
    assert [c.id for c in calls_of(first)] == ["call_1", "call_2"]
    assert first[-1].finish_reason == "tool_calls"

    second = events(CompletionRequest("scripted", conversation(1)))
    assert text_of(second) == "It is sunny."
    assert calls_of(second) == [ToolCall("call_3", "log", {})]
    assert second[-1].finish_reason == "tool_calls"

    third = events(CompletionRequest("scripted", conversation(2)))
    assert text_of(third) == "Done."
    assert calls_of(third) == []
    assert third[-1].finish_reason == "stop"


def test_a_script_that_ends_with_tools_ends_with_an_empty_answer():
    messages = [
        user("/tool ping"),
        ChatMessage("assistant", None, tool_calls=[ToolCall("call_1", "ping", {})]),
        ChatMessage("tool", "pong", tool_call_id="call_1"),
    ]
    evts = events(CompletionRequest("scripted", messages))
    # prompt: "/tool ping" is 3 tokens, "pong" 1
    assert evts == [StreamEnd("stop", Usage(prompt_tokens=4, completion_tokens=0))]


def test_a_new_user_message_starts_the_script_afresh():
    messages = [*conversation(1), ChatMessage("assistant", "ok"), user("/reply fresh")]
    assert text_of(events(CompletionRequest("scripted", messages))) == "fresh"


# --- scripted: errors and sleeps -------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 502, 503])
def test_error_fails_like_an_upstream_answering_that_status(status):
    seen, exc = failure(request("scripted", user(f"/error {status}")))
    assert seen == []
    assert type(exc) is UpstreamError
    assert isinstance(exc, ProviderError)
    assert (exc.status, exc.upstream_status, exc.code) == (502, status, "provider_error")
    assert exc.to_dict("req")["upstream_status"] == status


@pytest.mark.parametrize("status", [408, 504])
def test_error_408_and_504_are_timeouts(status):
    _, exc = failure(request("scripted", user(f"/error {status}")))
    assert type(exc) is UpstreamTimeout
    assert isinstance(exc, ProviderTimeout)
    assert (exc.status, exc.upstream_status) == (504, status)


def test_an_error_after_a_reply_fails_mid_stream():
    seen, exc = failure(request("scripted", user("/reply partial answer\n/error 503")))
    assert text_of(seen) == "partial answer"
    assert not any(isinstance(e, StreamEnd) for e in seen)
    assert exc.upstream_status == 503


def test_complete_raises_what_the_stream_raises():
    with pytest.raises(UpstreamError) as info:
        complete(request("scripted", user("/reply hi\n/error 500")))
    assert info.value.upstream_status == 500


@pytest.fixture
def sleeps(monkeypatch) -> list:
    """Replace the provider's asyncio.sleep: records ('sleep', seconds) in a shared log."""
    log: list = []

    async def fake_sleep(seconds: float) -> None:
        if seconds:
            log.append(("sleep", seconds))

    monkeypatch.setattr(builtin, "asyncio", SimpleNamespace(sleep=fake_sleep))
    return log


def test_sleep_waits_before_the_next_token(sleeps):
    async def run() -> None:
        async for event in BuiltinProvider().stream(
            request("scripted", user("/reply one\n/sleep 250\n/reply two"))
        ):
            sleeps.append(event)

    asyncio.run(run())
    assert sleeps[:4] == [TokenDelta("one"), ("sleep", 0.25), TokenDelta("\n"), TokenDelta("two")]


def test_sleep_is_capped_at_a_minute(sleeps):
    events(request("scripted", user("/sleep 99999999\n/reply late")))
    assert sleeps == [("sleep", 60.0)]


def test_sleep_really_waits():
    async def run() -> bool:
        task = asyncio.ensure_future(complete_async("/sleep 10000\n/reply never"))
        await asyncio.sleep(0.05)
        return task.done()

    async def complete_async(text: str) -> Completion:
        return await BuiltinProvider().complete(request("scripted", user(text)))

    assert asyncio.run(run()) is False


# --- usage, limits, complete -----------------------------------------------------------------


def test_usage_counts_every_message_and_the_reply_and_arguments():
    messages = [
        ChatMessage("system", "You are terse."),
        user('/reply Sure, here.\n/tool save {"k": "v"}'),
    ]
    end = events(CompletionRequest("scripted", messages))[-1]
    prompt = count_tokens("You are terse.") + count_tokens(messages[1].content)
    completion = count_tokens("Sure, here.") + count_tokens(json.dumps({"k": "v"}))
    assert end.usage == Usage(prompt, completion)


def test_max_tokens_cuts_the_reply_with_finish_reason_length():
    evts = events(request("scripted", user("/reply a b c d e\n/tool never"), max_tokens=3))
    assert text_of(evts) == "a b c "
    assert calls_of(evts) == []
    assert evts[-1] == StreamEnd("length", evts[-1].usage)
    assert evts[-1].usage.completion_tokens == 3


def test_complete_is_the_collected_stream():
    text = '/reply Checking now.\n/tool lookup {"city": "Oslo"}\n/tool clock'
    req = request("scripted", ChatMessage("system", "s"), user(text), temperature=0.3)
    evts = events(req)
    completion = complete(req)
    assert completion == Completion(
        content="Checking now.",
        tool_calls=[
            ToolCall("call_1", "lookup", {"city": "Oslo"}),
            ToolCall("call_2", "clock", {}),
        ],
        finish_reason="tool_calls",
        usage=evts[-1].usage,
    )


def test_answers_are_deterministic():
    req = request("scripted", user('/reply x y\n/tool t {"a": [1, 2]}'), temperature=1.5)
    assert events(req) == events(req)
    assert complete(request("echo", user("same"))) == complete(request("echo", user("same")))


# --- OpenAI's other parameters: honoured or refused ----------------------------------------


def refusal(req: CompletionRequest) -> UnsupportedParameter:
    with pytest.raises(UnsupportedParameter) as info:
        BuiltinProvider().check(req)
    return info.value


def test_n_gives_that_many_identical_choices_and_counts_the_prompt_once():
    one = events(request("scripted", user("/reply a b\n/tool t")))
    three = events(request("scripted", user("/reply a b\n/tool t"), n=3))
    for index in range(3):
        assert [e for e in three if getattr(e, "index", None) == index] == [
            replace(e, index=index) for e in one[:-1]
        ]
    end = three[-1]
    assert end.finish_reasons == ("tool_calls",) * 3
    assert end.usage == Usage(one[-1].usage.prompt_tokens, 3 * one[-1].usage.completion_tokens)


def test_stop_ends_the_answer_before_the_sequence_and_skips_what_follows():
    evts = events(request("scripted", user("/reply one two three four\n/tool t"), stop=("ee f",)))
    assert text_of(evts) == "one two thr"
    assert calls_of(evts) == []
    assert evts[-1].finish_reason == "stop"
    assert evts[-1].usage.completion_tokens == count_tokens("one two thr")
    # the earliest of several sequences wins; one that never occurs changes nothing
    evts = events(request("echo", user("a b c"), stop=("zzz", " b", "a")))
    assert text_of(evts) == "Echo: "
    assert text_of(events(request("echo", user("a b"), stop=("zzz",)))) == "Echo: a b"


def test_tool_choice_none_skips_the_tool_lines():
    evts = events(request("scripted", user("/reply Hi\n/tool t"), tool_choice="none"))
    assert (text_of(evts), calls_of(evts), evts[-1].finish_reason) == ("Hi", [], "stop")


@pytest.mark.parametrize(
    ("model", "text", "choice", "fits"),
    [
        ("scripted", "/tool t", "required", True),
        ("scripted", "/tool t", {"type": "function", "function": {"name": "t"}}, True),
        ("scripted", "/tool t\n/tool u", {"type": "function", "function": {"name": "t"}}, False),
        ("scripted", "/reply no call", "required", False),
        ("echo", "hi", "required", False),
        ("echo", "hi", "auto", True),
        ("echo", "hi", "none", True),
    ],
)
def test_a_forced_tool_choice_is_honoured_when_the_turn_calls_that_tool(model, text, choice, fits):
    req = request(model, user(text), tool_choice=choice)
    if fits:
        BuiltinProvider().check(req)
    else:
        assert (refusal(req).param, refusal(req).code) == ("tool_choice", "unsupported_value")


def test_parallel_tool_calls_false_refuses_a_script_with_several_calls_in_one_turn():
    BuiltinProvider().check(
        request("scripted", user("/tool a\n/reply x\n/tool b"), parallel_tool_calls=False)
    )
    refused = refusal(request("scripted", user("/tool a\n/tool b"), parallel_tool_calls=False))
    assert refused.param == "parallel_tool_calls"


def test_response_format_json_is_honoured_by_a_json_reply_and_refused_otherwise():
    json_object = {"type": "json_object"}
    BuiltinProvider().check(
        request("scripted", user('/reply {"a": 1}'), response_format=json_object)
    )
    BuiltinProvider().check(request("echo", user("x"), response_format={"type": "text"}))
    assert (
        refusal(request("echo", user("x"), response_format=json_object)).param == "response_format"
    )
    assert (
        "not a JSON object"
        in refusal(request("scripted", user("/reply [1]"), response_format=json_object)).detail
    )
    # the reply as the stop sequences leave it is what must be JSON
    cut = request("scripted", user('/reply {"a": 1} and more'), stop=(" and",))
    BuiltinProvider().check(replace(cut, response_format=json_object))
    # every remaining turn's reply counts, not only the next one
    later = "/tool t\n/reply not json"
    assert refusal(request("scripted", user(later), response_format=json_object)).param == (
        "response_format"
    )


def test_response_format_json_schema_checks_the_reply_against_the_schema():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    BuiltinProvider().check(request("scripted", user('/reply {"a": 1}'), response_format=fmt))
    assert (
        "does not fit"
        in refusal(request("scripted", user('/reply {"a": "x"}'), response_format=fmt)).detail
    )
    broken = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": 5}}}
    assert (
        "not a valid JSON Schema"
        in refusal(request("scripted", user('/reply {"a": 1}'), response_format=broken)).detail
    )


def test_logit_bias_is_refused_and_sampling_parameters_change_nothing():
    assert refusal(request("echo", user("x"), logit_bias={"50256": -100})).param == "logit_bias"
    BuiltinProvider().check(request("echo", user("x"), logit_bias={}))
    plain = events(request("echo", user("same")))
    tuned = request(
        "echo",
        user("same"),
        temperature=2,
        top_p=0.1,
        frequency_penalty=2,
        presence_penalty=-2,
        seed=7,
        user="end-user-1",
    )
    BuiltinProvider().check(tuned)
    assert events(tuned) == plain


def test_max_completion_tokens_limits_like_max_tokens():
    evts = events(request("scripted", user("/reply a b c d e"), max_completion_tokens=2))
    assert (text_of(evts), evts[-1].finish_reason) == ("a b ", "length")
