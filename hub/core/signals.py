"""Signals: how the write side tells this process's runtime that work is waiting, without
importing it.

A service sends a signal (usually from an after-commit hook, so nothing is woken for a
transaction that rolled back); the runtime connects its receivers when it starts and
disconnects them when it stops. Receivers must be cheap and must not raise: they only wake
a loop (set an event, notify a condition); the loop then reads the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("aether.signals")


class Signal:
    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[Callable[[], None]] = []

    def connect(self, receiver: Callable[[], None]) -> None:
        if receiver not in self._receivers:
            self._receivers.append(receiver)

    def disconnect(self, receiver: Callable[[], None]) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    def send(self) -> None:
        for receiver in list(self._receivers):
            try:
                receiver()
            except Exception:
                log.exception("a receiver of %s failed", self.name)

    def __repr__(self) -> str:
        return f"Signal({self.name!r})"


tasks_ready = Signal("tasks_ready")  # a task became runnable: the workers look for it
deliveries_due = Signal("deliveries_due")  # an outbound delivery is due: the deliverer looks
