"""A circuit breaker per provider, and :class:`GuardedProvider`, which applies it.

States: ``closed`` (calls go through) → ``open`` after ``failure_threshold`` consecutive
failures (calls are refused with :class:`BreakerOpen` and a ``Retry-After``) → ``half_open``
once ``cooldown`` seconds passed (one trial call goes through; the others are still
refused) → ``closed`` if the trial succeeds, ``open`` again (for a new cool-down) if it
fails. ``reset()`` closes the breaker at once.

The open → half-open move happens lazily, when the state is next read or a call is next
tried; ``on_change(old, new)`` fires then, as for every other move, outside the breaker's
lock (an exception in it is logged, never raised).

What counts: a call fails when it raises anything but an upstream 4xx other than 408 and
429 (a 400 or 404 means the upstream is up and answered the request; the breaker counts it
as a success). A stream fails if it raises before its :class:`StreamEnd`; a stream ending
without one fails too. A call cancelled or a stream closed early by its consumer is no
verdict: it only frees the half-open trial slot. A trial that never reports (a leaked
caller) holds the slot at most ``cooldown`` seconds, then another call may try.

Thread-safe: a lock guards the state, so one breaker may serve several event loops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from hub.llm.base import (
    BreakerOpen,
    Completion,
    CompletionRequest,
    Provider,
    StreamEnd,
    StreamEvent,
    UpstreamError,
)

log = logging.getLogger("aether.providers")

State = Literal["closed", "open", "half_open"]
NEUTRAL_EXEMPT = frozenset({408, 429})


def counts_as_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the provider is unhealthy (see the module docstring)."""
    if isinstance(exc, UpstreamError):
        status = exc.upstream_status
        if status is not None and 400 <= status < 500 and status not in NEUTRAL_EXEMPT:
            return False
    return True


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures → half-open after
    ``cooldown`` seconds (on ``clock``) → one trial decides."""

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State, State], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown < 0:
            raise ValueError("cooldown must not be negative")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state!r}, failures={self._failures}, "
            f"threshold={self.failure_threshold}, cooldown={self.cooldown})"
        )

    # --- reading --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        with self._lock:
            moves = self._advance()
            state = self._state
        self._notify(moves)
        return state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def opened_at(self) -> float | None:
        """When (on ``clock``) the breaker last opened; ``None`` while closed."""
        return self._opened_at

    def retry_after(self) -> float:
        """Seconds until a call may go through again (0 when one may go now)."""
        with self._lock:
            moves = self._advance()
            wait = self._wait()
        self._notify(moves)
        return wait

    # --- calls ----------------------------------------------------------------------------

    def acquire(self, provider: str | None = None) -> bool:
        """Let a call through or raise :class:`BreakerOpen`. Returns whether the call is the
        half-open trial; pass that back to :meth:`record_success` / :meth:`record_failure`
        / :meth:`release`."""
        with self._lock:
            moves = self._advance()
            trial = False
            if self._state == "half_open" and self._trial_started is None:
                self._trial_started = self.clock()
                trial = True
            refused = self._state != "closed" and not trial
            wait = self._wait() if refused else 0.0
        self._notify(moves)
        if refused:
            name = f"Provider {provider!r}" if provider else "The provider"
            raise BreakerOpen(
                f"{name} failed {self.failure_threshold} times in a row; calls are paused.",
                retry_after=wait,
                provider=provider,
            )
        return trial

    def record_success(self, trial: bool = False) -> None:
        with self._lock:
            moves: list[tuple[State, State]] = []
            if trial and self._state == "half_open":
                moves = self._move("closed")
            elif self._state == "closed":
                self._failures = 0
        self._notify(moves)

    def record_failure(self, trial: bool = False) -> None:
        with self._lock:
            moves: list[tuple[State, State]] = []
            self._failures += 1
            trial_failed = trial and self._state == "half_open"
            too_many = self._state == "closed" and self._failures >= self.failure_threshold
            if trial_failed or too_many:
                moves = self._move("open")
        self._notify(moves)

    def release(self, trial: bool = False) -> None:
        """A call ended without a verdict (cancelled, or a stream closed early)."""
        if trial:
            with self._lock:
                self._trial_started = None

    def reset(self) -> None:
        """Close the breaker and forget the failures."""
        with self._lock:
            moves = self._move("closed") if self._state != "closed" else []
            self._failures = 0
        self._notify(moves)

    # --- internals (called with the lock held) --------------------------------------------

    def _move(self, new: State) -> list[tuple[State, State]]:
        old, self._state = self._state, new
        self._trial_started = None
        if new == "closed":
            self._failures = 0
            self._opened_at = None
        elif new == "open":
            self._opened_at = self.clock()
        return [(old, new)] if old != new else []

    def _advance(self) -> list[tuple[State, State]]:
        now = self.clock()
        if self._state == "open" and now - (self._opened_at or 0.0) >= self.cooldown:
            return self._move("half_open")
        if (
            self._state == "half_open"
            and self._trial_started is not None
            and now - self._trial_started >= self.cooldown
        ):
            self._trial_started = None  # the trial's caller never reported: free the slot
        return []

    def _wait(self) -> float:
        if self._state == "open":
            return max(0.0, (self._opened_at or 0.0) + self.cooldown - self.clock())
        if self._state == "half_open" and self._trial_started is not None:
            return max(0.0, self._trial_started + self.cooldown - self.clock())
        return 0.0

    def _notify(self, moves: list[tuple[State, State]]) -> None:
        if self.on_change is None:
            return
        for old, new in moves:
            try:
                self.on_change(old, new)
            except Exception:
                log.exception("breaker on_change callback failed (%s -> %s)", old, new)


class GuardedProvider(Provider):
    """``provider`` behind ``breaker``: same interface, refused with :class:`BreakerOpen`
    while the breaker is open."""

    def __init__(self, provider: Provider, breaker: CircuitBreaker | None = None) -> None:
        self.provider = provider
        self.breaker = breaker or CircuitBreaker()
        self.id = provider.id
        self.kind = provider.kind

    def __repr__(self) -> str:
        return f"GuardedProvider({self.provider!r}, {self.breaker!r})"

    def models(self) -> list[str]:
        return self.provider.models()

    def check(self, request: CompletionRequest) -> None:
        self.provider.check(request)

    async def list_models(self, *, refresh: bool = False) -> list[str]:
        return await self.provider.list_models(refresh=refresh)

    async def complete(self, request: CompletionRequest) -> Completion:
        trial = self.breaker.acquire(self.id)
        try:
            completion = await self.provider.complete(request)
        except Exception as exc:
            self._verdict(exc, trial)
            raise
        except BaseException:
            self.breaker.release(trial)
            raise
        self.breaker.record_success(trial)
        return completion

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        trial = self.breaker.acquire(self.id)
        ended = False
        try:
            async with contextlib.aclosing(self.provider.stream(request)) as events:
                async for event in events:
                    if isinstance(event, StreamEnd) and not ended:
                        ended = True
                        self.breaker.record_success(trial)
                    yield event
        except Exception as exc:
            if not ended:
                self._verdict(exc, trial)
            raise
        except BaseException:
            if not ended:
                self.breaker.release(trial)
            raise
        if not ended:
            self.breaker.record_failure(trial)

    def _verdict(self, exc: Exception, trial: bool) -> None:
        if counts_as_failure(exc):
            self.breaker.record_failure(trial)
        else:
            self.breaker.record_success(trial)
