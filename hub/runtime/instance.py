"""This hub instance: its identity and heartbeat, drain state, runtime-tunable settings,
and the background loops it runs (workers, event bus and processor, scheduler, deliveries).

:func:`current` is the running instance, for the edge (handlers and middleware that report
on it or drain it); services never reach it: they read ``current_settings()`` and send
``hub.core.signals``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable

import peewee

from db import api_keys, sessions, system
from db.base import new_id, utcnow, write_transaction
from hub import __version__
from hub.core import access, generations, logs, metrics, programs, signals
from hub.core.aio import cancel_and_wait
from hub.engine import turns
from hub.events import bus
from hub.runtime import deliveries, processor, scheduler
from hub.runtime.worker import WorkerPool
from hub.services import idempotency
from hub.settings import Settings
from hub.settings import install as install_settings

log = logging.getLogger("aether.runtime")


async def _stopping(what: str, step) -> None:
    try:
        await step
    except Exception:
        log.warning("stopping %s failed", what, exc_info=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.base = settings
        self.settings = settings
        install_settings(settings)
        self.overrides: dict = {}
        self.instance_id = new_id("ins")
        self.started_at = utcnow()
        self._started_monotonic = time.monotonic()
        self.draining = False
        self.in_flight = 0
        self.websocket_clients = 0
        self.bootstrap_secret: str | None = None
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
        install_settings(self.settings)
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
        """Record the heartbeat, pick up runtime settings, drop expired idempotency keys,
        recover the turns dead processes left running."""
        self.record_heartbeat()
        self.apply_overrides(system.overrides())
        idempotency.prune()
        self.recover_turns()
        self.end_revoked_connections()
        for work in self.on_beat:
            work()

    def record_heartbeat(self) -> None:
        """This instance's row: alive now, draining or not, its workers and how many are busy."""
        with write_transaction():
            system.Instance.update(
                heartbeat_at=utcnow(),
                draining=self.draining,
                workers=self.workers.count if self.workers else 0,
                busy_workers=self.workers.busy if self.workers else 0,
            ).where(system.Instance.id == self.instance_id).execute()

    def dead_instances(self, among: set[str] | None = None) -> set[str]:
        """The instances (of ``among``, or of those owning running turns) that are gone:
        stopped, silent longer than ``stale_after``, or on this machine with their process
        ended (a hub killed and started again is seen at once, not after the silence)."""
        if among is None:
            among = sessions.running_turn_owners()
        among = among - {self.instance_id}
        if not among:
            return set()
        silent_since = utcnow() - dt.timedelta(seconds=self.stale_after())
        host = socket.gethostname()
        dead = set(among)  # an instance with no row at all is gone too
        for row in system.Instance.select().where(system.Instance.id.in_(sorted(among))):
            gone = (
                row.stopped_at is not None
                or row.heartbeat_at < silent_since
                or (row.hostname == host and not _process_alive(row.pid))
            )
            if not gone:
                dead.discard(row.id)
        return dead

    def end_revoked_connections(self) -> int:
        """End this process's streams and WebSockets whose key was revoked (by any process)."""
        held = access.watch.key_ids()
        return access.watch.end_keys(api_keys.revoked_among(held)) if held else 0

    def recover_turns(self) -> list[str]:
        """Mark ``interrupted`` the turns dead instances left running (and, at start, those
        with no owner recorded from before this instance started)."""
        recovered = turns.recover_interrupted(self.dead_instances(), started_before=self.started_at)
        if recovered:
            log.warning("recovered interrupted turns", extra={"turns": recovered})
        return recovered

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
        generations.current().instance_id = self.instance_id
        try:
            await asyncio.to_thread(self.recover_turns)
        except peewee.PeeweeException:
            log.warning("recovering interrupted turns failed", exc_info=True)
        self._heartbeat = asyncio.create_task(self._beat_forever())
        self.bus = bus.Bus(self.settings)
        await self.bus.start()
        signals.tasks_ready.connect(self.wake_workers)
        self._background = [
            asyncio.create_task(processor.process_forever(self.bus)),
            asyncio.create_task(scheduler.run_forever(self)),
            asyncio.create_task(deliveries.run_forever(self)),
            # a user-program worker, ready before the first filter or template (it lives as
            # long as this process: a later runtime in the same process reuses it)
            asyncio.create_task(asyncio.to_thread(programs.warm)),
        ]
        if self.settings.workers > 0:
            self.workers = WorkerPool(self, self.settings.workers)
            await self.workers.start()
            await asyncio.to_thread(self.record_heartbeat)  # other instances see the workers

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
        processor.sweep(self.settings)

    async def stop(self) -> None:
        """Stop everything started, each part even when another one fails (a part left
        running would outlive the app: a LISTEN thread, a deliverer)."""
        signals.tasks_ready.disconnect(self.wake_workers)
        if self.workers is not None:
            workers, self.workers = self.workers, None
            await _stopping("the task workers", workers.stop())
        background, self._background = self._background, []
        await _stopping("the background loops", cancel_and_wait(background))
        if self.bus is not None:
            bus, self.bus = self.bus, None
            await _stopping("the event bus", bus.stop())
        await _stopping("the chat generations", generations.current().shutdown())
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


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    """The instance this process serves (for the edge only)."""
    if _current is None:
        raise RuntimeError("create_app() has not run in this process")
    return _current
