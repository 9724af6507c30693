"""This hub instance: its identity and heartbeat, drain state, runtime-tunable settings,
and the per-key rate limiter."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import peewee

from db import system
from db.base import new_id, utcnow, write_transaction
from hub import __version__, logs, metrics
from hub.providers import BuiltinProvider, ProviderRegistry
from hub.services import idempotency
from hub.settings import Settings

log = logging.getLogger("aether.runtime")


async def cancel_and_wait(tasks: list[asyncio.Task], patience: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until they are done, cancelling again every half second (a
    task that swallowed a cancel, as ``asyncio.wait_for`` can on Python 3.11, stops at its
    next await); gives up, with a warning, after ``patience`` seconds."""
    pending = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + patience
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.5)
        if pending and time.monotonic() > deadline:
            log.warning("background tasks did not stop", extra={"tasks": len(pending)})
            return
    for task in tasks:  # retrieve the outcomes: no "exception was never retrieved"
        if task.done() and not task.cancelled():
            task.exception()


async def _stopping(what: str, step) -> None:
    try:
        await step
    except Exception:
        log.warning("stopping %s failed", what, exc_info=True)


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, per_minute: int) -> float:
        """0 when the request may pass, else the seconds to wait."""
        if per_minute <= 0:
            return 0.0
        now = time.monotonic()
        rate = per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


class Generations:
    """The chat generations in flight in this process, one per session at most.

    Each runs in an asyncio task of its own (kept referenced here) so that a client going
    away never cancels it; ``plan`` objects come from ``hub.services.chat``.
    """

    def __init__(self) -> None:
        self.active: dict = {}
        self.tasks: set[asyncio.Task] = set()

    def claim(self, plan) -> None:
        self.active[plan.session_id] = plan

    def release(self, plan) -> None:
        if self.active.get(plan.session_id) is plan:
            del self.active[plan.session_id]

    def busy(self, session_id: str) -> bool:
        return session_id in self.active

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def shutdown(self) -> None:
        """Stop every generation (their turns are kept as ``stopped``) and wait for them."""
        for plan in list(self.active.values()):
            plan.stop.set()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.base = settings
        self.settings = settings
        self.overrides: dict = {}
        self.instance_id = new_id("ins")
        self.started_at = utcnow()
        self._started_monotonic = time.monotonic()
        self.draining = False
        self.in_flight = 0
        self.websocket_clients = 0
        self.rate_limiter = RateLimiter()
        self.bootstrap_secret: str | None = None
        self.generations = Generations()
        self.providers = ProviderRegistry()  # create_app installs the configured ones
        self.providers.register(BuiltinProvider())
        self.on_beat: list[Callable[[], None]] = []  # more work each heartbeat, in a thread
        self.workers = None  # the WorkerPool, while it runs
        self.bus = None  # the event Bus, while it runs
        self._heartbeat: asyncio.Task | None = None
        self._background: list[asyncio.Task] = []

    # --- settings ------------------------------------------------------------------------

    def apply_overrides(self, overrides: dict) -> None:
        valid = {k: v for k, v in overrides.items() if k in Settings.RUNTIME_TUNABLE}
        self.overrides = valid
        self.settings = self.base.replace(**valid)
        logs.set_level(self.settings.log_level)

    def update_settings(self, changes: dict) -> None:
        """Persist runtime-tunable changes (shared by every instance) and apply them here."""
        now = utcnow()
        with write_transaction():
            for key, value in changes.items():
                system.ConfigOverride.insert(key=key, value=value, updated_at=now).on_conflict(
                    conflict_target=[system.ConfigOverride.key],
                    update={
                        system.ConfigOverride.value: value,
                        system.ConfigOverride.updated_at: now,
                    },
                ).execute()
        self.apply_overrides({**self.overrides, **changes})

    # --- instance ------------------------------------------------------------------------

    @property
    def uptime_seconds(self) -> float:
        return round(time.monotonic() - self._started_monotonic, 3)

    def register(self) -> None:
        now = utcnow()
        with write_transaction():
            system.Instance.create(
                id=self.instance_id,
                name=self.settings.instance_name or socket.gethostname(),
                hostname=socket.gethostname(),
                pid=os.getpid(),
                version=__version__,
                started_at=now,
                heartbeat_at=now,
                draining=False,
            )
        self.apply_overrides(system.overrides())

    def beat(self) -> None:
        """Record the heartbeat, pick up runtime settings, drop expired idempotency keys."""
        with write_transaction():
            system.Instance.update(
                heartbeat_at=utcnow(),
                draining=self.draining,
                workers=self.workers.count if self.workers else 0,
                busy_workers=self.workers.busy if self.workers else 0,
            ).where(system.Instance.id == self.instance_id).execute()
        self.apply_overrides(system.overrides())
        idempotency.prune()
        for work in self.on_beat:
            work()

    def drain(self) -> None:
        self.draining = True
        metrics.DRAINING.set(1)
        self.beat()

    def instance(self) -> system.Instance:
        return system.Instance.get_by_id(self.instance_id)

    def stale_after(self) -> float:
        return max(3 * self.settings.heartbeat_seconds, 15.0)

    async def start(self) -> None:
        """Start the heartbeat and the task workers (``register`` ran when the app was
        created)."""
        from hub import deliveries, eventbus, scheduler
        from hub.worker import WorkerPool

        self._heartbeat = asyncio.create_task(self._beat_forever())
        self.bus = eventbus.Bus(self.settings)
        await self.bus.start()
        self._background = [
            asyncio.create_task(eventbus.process_forever(self.bus)),
            asyncio.create_task(scheduler.run_forever(self)),
            asyncio.create_task(deliveries.run_forever(self)),
        ]
        if self.settings.workers > 0:
            self.workers = WorkerPool(self.settings.workers)
            await self.workers.start()
            await asyncio.to_thread(self.beat)

    def wake_workers(self) -> None:
        if self.workers is not None:
            self.workers.wake()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await asyncio.to_thread(self.beat)
            except peewee.PeeweeException:
                log.warning("heartbeat failed", exc_info=True)

    def sweep_events(self) -> None:
        from hub import eventbus

        eventbus.sweep(self.settings)

    async def stop(self) -> None:
        """Stop everything started, each part even when another one fails (a part left
        running would outlive the app: a LISTEN thread, a deliverer)."""
        if self.workers is not None:
            workers, self.workers = self.workers, None
            await _stopping("the task workers", workers.stop())
        background, self._background = self._background, []
        await _stopping("the background loops", cancel_and_wait(background))
        if self.bus is not None:
            bus, self.bus = self.bus, None
            await _stopping("the event bus", bus.stop())
        await _stopping("the chat generations", self.generations.shutdown())
        if self._heartbeat is not None:
            heartbeat, self._heartbeat = self._heartbeat, None
            await _stopping("the heartbeat", cancel_and_wait([heartbeat]))
        try:
            await asyncio.to_thread(self._mark_stopped)
        except peewee.PeeweeException:
            log.warning("could not mark the instance stopped", exc_info=True)

    def _mark_stopped(self) -> None:
        with write_transaction():
            system.Instance.update(stopped_at=utcnow()).where(
                system.Instance.id == self.instance_id
            ).execute()
