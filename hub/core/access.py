"""The long-lived connections of this process, by the API key that opened them, so that a
revoked key loses them: event streams (SSE), WebSockets.

A connection ``hold``s its key with an ``end`` callback (callable from any thread) and
``release``s it when it closes. When a key is revoked, ``end_keys`` calls the callbacks of
its connections: at once in the process that revoked it (an after-commit hook of
``hub.services.keys.revoke``), and in every other process at its next heartbeat, which asks
the database which of the keys held here are revoked (``hub.runtime.instance``)."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger("aether.access")


class Watch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, tuple[str, Callable[[], None]]] = {}
        self._tokens = itertools.count(1)

    def hold(self, key_id: str, end: Callable[[], None]) -> int:
        with self._lock:
            token = next(self._tokens)
            self._held[token] = (key_id, end)
        return token

    def release(self, token: int) -> None:
        with self._lock:
            self._held.pop(token, None)

    def key_ids(self) -> set[str]:
        with self._lock:
            return {key_id for key_id, _ in self._held.values()}

    def end_keys(self, key_ids: Iterable[str]) -> int:
        """End every connection held by one of ``key_ids``; returns how many."""
        wanted = set(key_ids)
        with self._lock:
            ending = [(t, end) for t, (key, end) in self._held.items() if key in wanted]
            for token, _ in ending:
                del self._held[token]
        for _, end in ending:
            try:
                end()
            except Exception:
                log.exception("ending a connection of a revoked key failed")
        return len(ending)


watch = Watch()
