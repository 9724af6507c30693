"""The circuit breaker, GuardedProvider (the breaker applied to a provider) and the registry
that hands out guarded providers. The builtin ``scripted`` model plays the provider: its
``/error STATUS`` line makes a call fail the way an upstream would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hub.core.problems import NotFound, ServiceUnavailable, Unprocessable
from hub.llm import (
    BreakerOpen,
    BuiltinProvider,
    ChatMessage,
    CircuitBreaker,
    CompletionRequest,
    GuardedProvider,
    Provider,
    ProviderRegistry,
    StreamEvent,
    TokenDelta,
    UpstreamError,
    UpstreamTimeout,
    counts_as_failure,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def breaker(clock, changes) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=3, cooldown=30, clock=clock, on_change=lambda *m: changes.append(m)
    )


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.acquire())


def scripted(text: str) -> CompletionRequest:
    return CompletionRequest("scripted", [ChatMessage("user", text)])


OK = scripted("/reply fine")


def call(guarded: Provider, req: CompletionRequest = OK, *, stream: bool = False):
    """Complete (or stream and collect) ``req``; returns the exception raised, if any."""

    async def run():
        if stream:
            return [event async for event in guarded.stream(req)]
        return await guarded.complete(req)

    try:
        return asyncio.run(run())
    except Exception as exc:
        return exc


# --- the breaker -------------------------------------------------------------------------------


def test_a_new_breaker_is_closed(breaker):
    assert (breaker.state, breaker.consecutive_failures, breaker.opened_at) == ("closed", 0, None)
    assert breaker.acquire() is False
    assert breaker.retry_after() == 0


def test_it_opens_after_the_threshold_of_consecutive_failures(breaker, clock, changes):
    fail(breaker, 2)
    assert (breaker.state, breaker.consecutive_failures) == ("closed", 2)
    fail(breaker, 1)
    assert breaker.state == "open"
    assert breaker.consecutive_failures == 3
    assert breaker.opened_at == clock.now
    assert changes == [("closed", "open")]


def test_a_success_resets_the_count(breaker):
    fail(breaker, 2)
    breaker.record_success(breaker.acquire())
    assert breaker.consecutive_failures == 0
    fail(breaker, 2)
    assert breaker.state == "closed"


def test_the_default_threshold_is_five_and_the_cooldown_thirty_seconds(clock):
    breaker = CircuitBreaker(clock=clock)
    fail(breaker, 4)
    assert breaker.state == "closed"
    fail(breaker, 1)
    assert breaker.state == "open"
    clock.advance(29.9)
    assert breaker.state == "open"
    clock.advance(0.1)
    assert breaker.state == "half_open"


def test_while_open_calls_are_refused_with_retry_after(breaker, clock):
    fail(breaker, 3)
    clock.advance(10.5)
    with pytest.raises(BreakerOpen) as info:
        breaker.acquire("gw")
    exc = info.value
    assert isinstance(exc, ServiceUnavailable)
    assert (exc.status, exc.code) == (503, "breaker_open")
    assert exc.headers == {"Retry-After": "20"}
    assert exc.retry_after == 20
    body = exc.to_dict("r")
    assert body["code"] == "breaker_open" and body["provider"] == "gw"
    assert "'gw'" in exc.detail
    assert breaker.retry_after() == pytest.approx(19.5)


def test_retry_after_is_at_least_one_second(breaker, clock):
    fail(breaker, 3)
    clock.advance(29.99)
    with pytest.raises(BreakerOpen) as info:
        breaker.acquire()
    assert info.value.headers["Retry-After"] == "1"


def test_after_the_cooldown_one_trial_goes_through(breaker, clock, changes):
    fail(breaker, 3)
    clock.advance(30)
    assert breaker.state == "half_open"
    assert changes[-1] == ("open", "half_open")
    assert breaker.acquire() is True
    with pytest.raises(BreakerOpen):
        breaker.acquire()  # only one trial at a time


def test_a_successful_trial_closes_the_breaker(breaker, clock, changes):
    fail(breaker, 3)
    clock.advance(30)
    breaker.record_success(breaker.acquire())
    assert (breaker.state, breaker.consecutive_failures, breaker.opened_at) == ("closed", 0, None)
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert breaker.acquire() is False


def test_a_failed_trial_opens_it_again_for_a_new_cooldown(breaker, clock, changes):
    fail(breaker, 3)
    clock.advance(31)
    breaker.record_failure(breaker.acquire())
    assert breaker.state == "open"
    assert breaker.opened_at == clock.now
    assert changes[-1] == ("half_open", "open")
    clock.advance(29)
    assert breaker.state == "open"
    clock.advance(1)
    assert breaker.state == "half_open"


def test_a_trial_without_a_verdict_frees_the_slot(breaker, clock):
    fail(breaker, 3)
    clock.advance(30)
    breaker.release(breaker.acquire())
    assert breaker.state == "half_open"
    assert breaker.acquire() is True


def test_a_trial_that_never_reports_holds_the_slot_one_cooldown_at_most(breaker, clock):
    fail(breaker, 3)
    clock.advance(30)
    assert breaker.acquire() is True
    clock.advance(29)
    with pytest.raises(BreakerOpen) as info:
        breaker.acquire()
    assert info.value.retry_after == 1
    clock.advance(1)
    assert breaker.acquire() is True


def test_a_late_result_of_an_ordinary_call_does_not_decide_the_trial(breaker, clock):
    ordinary = breaker.acquire()
    fail(breaker, 3)
    clock.advance(30)
    trial = breaker.acquire()
    breaker.record_success(ordinary)
    assert breaker.state == "half_open"
    breaker.record_failure(ordinary)
    assert breaker.state == "half_open"
    breaker.record_success(trial)
    assert breaker.state == "closed"


def test_reset_closes_it(breaker, changes):
    fail(breaker, 3)
    breaker.reset()
    assert (breaker.state, breaker.consecutive_failures, breaker.opened_at) == ("closed", 0, None)
    assert changes == [("closed", "open"), ("open", "closed")]
    breaker.reset()
    assert len(changes) == 2  # no move, no callback


def test_a_failing_callback_never_breaks_a_call(clock, caplog):
    def explode(old: str, new: str) -> None:
        raise RuntimeError("metrics are down")

    breaker = CircuitBreaker(failure_threshold=1, clock=clock, on_change=explode)
    breaker.record_failure(breaker.acquire())
    assert breaker.state == "open"
    assert "on_change callback failed" in caplog.text


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(cooldown=-1)


@pytest.mark.parametrize(
    ("exc", "counts"),
    [
        (UpstreamError("x", upstream_status=500), True),
        (UpstreamError("x", upstream_status=502), True),
        (UpstreamError("x", upstream_status=429), True),
        (UpstreamError("x"), True),
        (UpstreamTimeout("x"), True),
        (UpstreamTimeout("x", upstream_status=408), True),
        (RuntimeError("bug"), True),
        (UpstreamError("x", upstream_status=400), False),
        (UpstreamError("x", upstream_status=401), False),
        (UpstreamError("x", upstream_status=404), False),
        (UpstreamError("x", upstream_status=422), False),
    ],
)
def test_which_errors_count_as_provider_failures(exc, counts):
    assert counts_as_failure(exc) is counts


# --- the guarded provider -------------------------------------------------------------------------


@pytest.fixture
def guarded(breaker) -> GuardedProvider:
    return GuardedProvider(BuiltinProvider("local"), breaker)


def test_a_guarded_provider_looks_like_its_provider(guarded):
    assert isinstance(guarded, Provider)
    assert (guarded.id, guarded.kind, guarded.models()) == (
        "local",
        "builtin",
        ["echo", "scripted"],
    )
    assert asyncio.run(guarded.list_models()) == ["echo", "scripted"]
    assert call(guarded).content == "fine"
    assert "GuardedProvider(BuiltinProvider(id='local')" in repr(guarded)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_failures_open_the_breaker_and_calls_are_refused(guarded, breaker, stream):
    for _ in range(3):
        assert isinstance(call(guarded, scripted("/error 500"), stream=stream), UpstreamError)
    assert breaker.state == "open"
    refused = call(guarded, OK, stream=stream)
    assert isinstance(refused, BreakerOpen)
    assert refused.to_dict("r")["provider"] == "local"


@pytest.mark.parametrize("line", ["/error 408", "/error 429", "/error 503", "/error 504"])
def test_timeouts_and_rate_limits_count(guarded, breaker, line):
    for _ in range(3):
        call(guarded, scripted(line))
    assert breaker.state == "open"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_do_not_count(guarded, breaker, status):
    for _ in range(5):
        exc = call(guarded, scripted(f"/error {status}"), stream=True)
        assert isinstance(exc, UpstreamError) and exc.upstream_status == status
    assert (breaker.state, breaker.consecutive_failures) == ("closed", 0)


def test_a_client_error_resets_the_count_the_upstream_answered(guarded, breaker):
    call(guarded, scripted("/error 500"))
    call(guarded, scripted("/error 500"))
    call(guarded, scripted("/error 400"))
    assert breaker.consecutive_failures == 0


def test_a_stream_failing_after_tokens_counts(guarded, breaker):
    async def run(seen: list) -> None:
        async for event in guarded.stream(scripted("/reply some words\n/error 502")):
            seen.append(event)

    for _ in range(3):
        seen: list = []
        with pytest.raises(UpstreamError):
            asyncio.run(run(seen))
        assert seen == [TokenDelta("some "), TokenDelta("words")]
    assert breaker.state == "open"


class Truncated(Provider):
    """A broken provider whose stream stops without its StreamEnd."""

    id, kind = "broken", "test"

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        yield TokenDelta("half")

    def models(self) -> list[str]:
        return ["x"]


def test_a_stream_ending_without_stream_end_counts(breaker):
    guarded = GuardedProvider(Truncated(), breaker)
    for _ in range(3):
        assert call(guarded, OK, stream=True) == [TokenDelta("half")]
    assert breaker.state == "open"


def test_a_stream_closed_early_by_its_consumer_is_no_verdict(guarded, breaker, clock):
    fail(breaker, 3)
    clock.advance(30)

    async def first_token_only() -> None:
        stream = guarded.stream(scripted("/reply one two three"))
        assert await anext(stream) == TokenDelta("one ")
        await stream.aclose()

    asyncio.run(first_token_only())
    assert breaker.state == "half_open"
    assert breaker.acquire() is True  # the slot was freed


def test_a_cancelled_call_is_no_verdict(guarded, breaker, clock):
    fail(breaker, 3)
    clock.advance(30)

    async def cancel() -> None:
        task = asyncio.ensure_future(guarded.complete(scripted("/sleep 10000\n/reply late")))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel())
    assert breaker.state == "half_open"
    assert breaker.acquire() is True


@pytest.mark.parametrize("stream", [False, True])
def test_the_trial_call_decides(guarded, breaker, clock, stream):
    fail(breaker, 3)
    clock.advance(30)
    assert isinstance(call(guarded, scripted("/error 500"), stream=stream), UpstreamError)
    assert breaker.state == "open"
    clock.advance(30)
    assert not isinstance(call(guarded, OK, stream=stream), Exception)
    assert breaker.state == "closed"


def test_a_stream_counts_as_succeeded_at_its_end_even_if_not_read_further(guarded, breaker):
    fail(breaker, 2)

    async def read_to_end() -> None:
        stream = guarded.stream(OK)
        async for _ in stream:
            pass

    asyncio.run(read_to_end())
    assert breaker.consecutive_failures == 0


# --- the registry ---------------------------------------------------------------------------------


def test_the_registry_hands_out_guarded_providers():
    registry = ProviderRegistry()
    guarded = registry.register(BuiltinProvider())
    assert isinstance(guarded, GuardedProvider)
    assert registry.get("builtin") is guarded
    assert "builtin" in registry and len(registry) == 1
    assert [p.id for p in registry] == ["builtin"] == registry.ids()


def test_resolve_splits_provider_and_model():
    registry = ProviderRegistry()
    registry.register(BuiltinProvider())
    registry.register(BuiltinProvider("gw"))
    provider, model = registry.resolve("builtin/echo")
    assert (provider.id, model) == ("builtin", "echo")
    provider, model = registry.resolve("gw/meta-llama/Llama-3-8B")
    assert (provider.id, model) == ("gw", "meta-llama/Llama-3-8B")


@pytest.mark.parametrize("ref", ["echo", "builtin/", "/echo", ""])
def test_resolve_refuses_a_malformed_model_ref(ref):
    registry = ProviderRegistry()
    registry.register(BuiltinProvider())
    with pytest.raises(Unprocessable) as info:
        registry.resolve(ref)
    assert info.value.code == "invalid_model_ref"


def test_an_unknown_provider_is_not_found():
    registry = ProviderRegistry()
    with pytest.raises(NotFound) as info:
        registry.resolve("nope/echo")
    assert info.value.code == "provider_not_found"
    with pytest.raises(NotFound):
        registry.reset("nope")
    assert registry.remove("nope") is False


def test_each_provider_gets_its_own_breaker_from_the_factory(clock):
    made: list[str] = []

    def factory(provider_id: str) -> CircuitBreaker:
        made.append(provider_id)
        return CircuitBreaker(failure_threshold=1, clock=clock)

    registry = ProviderRegistry(factory)
    a = registry.register(BuiltinProvider("a"))
    b = registry.register(BuiltinProvider("b"))
    assert made == ["a", "b"]
    call(a, scripted("/error 500"))
    assert (a.breaker.state, b.breaker.state) == ("open", "closed")
    registry.reset("a")
    assert a.breaker.state == "closed"


def test_re_registering_keeps_the_breaker_unless_told_otherwise():
    registry = ProviderRegistry(lambda _id: CircuitBreaker(failure_threshold=1))
    first = registry.register(BuiltinProvider("a"))
    call(first, scripted("/error 500"))
    again = registry.register(BuiltinProvider("a"))
    assert again.breaker is first.breaker and again.breaker.state == "open"
    assert registry.get("a") is again
    fresh = registry.register(BuiltinProvider("a"), keep_breaker=False)
    assert fresh.breaker.state == "closed"
    assert registry.register(fresh).provider is fresh.provider  # never guarded twice
    assert registry.remove("a") is True and "a" not in registry
