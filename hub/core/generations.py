"""The chat generations in flight in this process, one per session at most.

Each runs in an asyncio task of its own (kept referenced here) so that a client going away
never cancels it. Plans come from ``hub.engine.turns``; this registry only needs their
``session_id`` and ``stop`` event. One registry per process (:func:`current`); the runtime
shuts it down when it stops.
"""

from __future__ import annotations

import asyncio


class Generations:
    def __init__(self) -> None:
        self.active: dict = {}
        self.tasks: set[asyncio.Task] = set()
        # The hub instance generating here (set by the runtime when it starts): recorded on
        # each running turn, so a turn a dead process left ``running`` can be recovered.
        self.instance_id: str | None = None

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


_current = Generations()


def current() -> Generations:
    return _current
