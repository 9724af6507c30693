"""Task workers: async loops that claim tasks and run the agent loop on them.

``aether serve`` runs ``AETHER_WORKERS`` of them beside the API; ``aether worker`` runs them
alone. Each worker claims one task at a time (``hub.services.tasks.claim``), renews its lease
every third of ``AETHER_WORKER_LEASE_SECONDS`` while it runs, and records the outcome:
completed, a failed attempt (retried with backoff, or dead after ``max_attempts``),
cancelled (``cancel`` asked between two steps) or paused for an approval (the worker is free
at once; the task waits in the database). ``timeout_seconds`` bounds each attempt.

An idle worker sleeps until a task is created or resumed in this process, or for
``AETHER_WORKER_POLL_SECONDS`` (work written by other processes). Stopping the pool hands
the tasks in hand back to the queue (the attempt does not count) so nothing waits for a
lease to lapse after a clean shutdown.

The pool also sweeps expired approvals (an expired approval counts as denied, and the task or
chat turn goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging

import peewee

from db import agents
from db.base import DatabaseUnavailable, write_transaction
from db.tasks import Task
from hub.core.aio import cancel_and_wait
from hub.core.problems import NotFound, Problem
from hub.engine import disclosure, turns, workflow_steps
from hub.engine.loop import AgentLoop, LoopState, Owner, agent_toolset
from hub.llm import ChatMessage
from hub.services import approvals, memory, providers, tasks

log = logging.getLogger("aether.worker")


def task_messages(
    agent: agents.Agent, task: Task, offered: list[disclosure.Offer] = ()
) -> list[ChatMessage]:
    """The conversation a task starts from: the agent's prompt, the skills it is offered,
    the memories it recalls for the task (agents with memory), the task and its context."""
    text = task.description
    if task.context:
        text += "\n\nContext:\n" + json.dumps(task.context, indent=2, sort_keys=True)
    system = [ChatMessage("system", agent.system_prompt)] if agent.system_prompt else []
    if offered:
        system.append(ChatMessage("system", disclosure.context_text(offered)))
    project = task.context.get("project_id") if isinstance(task.context, dict) else None
    recalled = memory.recall(agent, task.description, project_id=project)
    if recalled:
        system.append(ChatMessage("system", memory.recall_text(recalled)))
    return [*system, ChatMessage("user", text)]


class LeaseLost(Exception):
    """Another worker owns the task now: this attempt's outcome must not be recorded."""


class WorkerPool:
    def __init__(self, runtime, count: int) -> None:
        self.runtime = runtime  # the Runtime that runs this pool: settings, identity, drain
        self.count = count
        self.busy = 0
        self.in_hand: dict[str, Task] = {}
        self._idle: list[asyncio.Future] = []  # one future per idle worker, oldest first
        self._lost: set[str] = set()  # tasks whose lease another worker took mid-attempt
        self._interrupted: list[Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []

    @property
    def settings(self):
        return self.runtime.settings

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            self._loop.create_task(self._work(f"{self.runtime.instance_id}/{n}"))
            for n in range(self.count)
        ]
        self._tasks.append(self._loop.create_task(self._housekeeping()))

    def wake(self) -> None:
        """A task became runnable here: wake one idle worker (callable from any thread)."""
        if self._loop is None or self._loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake_one()
        else:
            self._loop.call_soon_threadsafe(self._wake_one)

    def _wake_one(self) -> None:
        while self._idle:
            waiter = self._idle.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    async def stop(self) -> None:
        workers, self._tasks = self._tasks, []
        await cancel_and_wait(workers)
        held = [*self.in_hand.values(), *self._interrupted]
        self._interrupted = []
        if held:
            await asyncio.to_thread(self._hand_back, held)

    @staticmethod
    def _hand_back(held: list[Task]) -> None:
        for task in held:
            with write_transaction():
                tasks.hand_back(task)

    # --- the loops -----------------------------------------------------------------------

    async def _work(self, worker_id: str) -> None:
        while True:
            if self.runtime.draining:  # a draining hub finishes what it holds, takes no more
                await asyncio.sleep(self.settings.worker_poll_seconds)
                continue
            try:
                task = await asyncio.to_thread(
                    tasks.claim, worker_id, self.settings.worker_lease_seconds
                )
            except peewee.PeeweeException:
                log.warning("claim failed", exc_info=True)
                task = None
            if task is None:
                waiter = self._loop.create_future()
                self._idle.append(waiter)
                # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that arrives
                # in the same step as the wake-up, and the pool's stop() would then hang.
                await asyncio.wait({waiter}, timeout=self.settings.worker_poll_seconds)
                if not waiter.done():
                    waiter.cancel()
                if waiter in self._idle:
                    self._idle.remove(waiter)
                continue
            self.busy += 1
            self.in_hand[task.id] = task
            try:
                await self.execute(task)
            except asyncio.CancelledError:
                self._interrupted.append(task)  # the pool stops: stop() hands it back
                raise
            except DatabaseUnavailable:
                # Cut off by the database going away: back to the queue, not counted as an
                # attempt, as soon as the database answers (not when the lease lapses).
                log.warning("attempt cut off by the database; handing it back")
                await self._settle(task, self._hand_back, [task])
            except Exception:
                log.exception("task attempt crashed", extra={"task_id": task.id})
            finally:
                self.in_hand.pop(task.id, None)
                self.busy -= 1

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(min(self.settings.heartbeat_seconds, 5.0))
            try:
                await sweep_approvals()
            except peewee.PeeweeException:
                log.warning("approval sweep failed", exc_info=True)

    # --- one attempt ---------------------------------------------------------------------

    async def execute(self, task: Task) -> None:
        """Run one attempt of a claimed task and record how it ended."""
        stop = asyncio.Event()
        attempt = asyncio.ensure_future(self._attempt(task, stop))
        renewer = asyncio.ensure_future(self._renew(task, stop, attempt))
        try:
            await attempt
        except LeaseLost:
            log.warning("lease lost; attempt discarded", extra={"task_id": task.id})
        except asyncio.CancelledError:
            # Only the renewer's cancel (lease lost) ends here; the pool stopping must reach
            # the worker's loop, or stop() would wait for a worker that never ends.
            if task.id not in self._lost:
                raise
            log.warning("lease lost; attempt discarded", extra={"task_id": task.id})
        finally:
            self._lost.discard(task.id)
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew(self, task: Task, stop: asyncio.Event, attempt: asyncio.Future) -> None:
        lease = self.settings.worker_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                ours, cancel = await asyncio.to_thread(tasks.renew, task, lease)
            except peewee.PeeweeException:
                log.warning("lease renewal failed", exc_info=True)
                continue
            if not ours:
                self.in_hand.pop(task.id, None)
                self._lost.add(task.id)
                attempt.cancel()
                return
            if cancel:
                stop.set()

    async def _attempt(self, task: Task, stop: asyncio.Event) -> None:
        if task.kind != "agent":
            await self._step(task)
            return
        if task.workflow_run_id and not task.loop_state:
            prepared = await workflow_steps.prepare_agent(task)
            if prepared.kind == "fail":
                await self._fail(
                    task, prepared.code, prepared.detail, prepared.retryable, prepared.write
                )
                return
            if prepared.prompt != task.description:
                done = await self._settle(
                    task, tasks.describe, task, prepared.prompt, prepared.write
                )
                if not done:
                    raise LeaseLost(task.id)
        agent = await asyncio.to_thread(agents.get, task.agent_id)
        if agent is None:
            await self._fail(task, "agent_gone", f"Agent {task.agent_id!r} was deleted.", False)
            return
        if agent.status != "active":
            await self._fail(task, "agent_not_active", f"Agent {agent.id!r} is {agent.status}.")
            return
        try:
            provider, model = providers.registry().resolve(agent.model)
        except NotFound:
            detail = f"Agent {agent.id!r} uses {agent.model!r}, whose provider is not configured."
            await self._fail(task, "provider_not_configured", detail)
            return
        tools, offered = await asyncio.to_thread(agent_toolset, agent)
        if task.loop_state:
            loop_state = LoopState.from_json(task.loop_state)
        else:
            messages = await asyncio.to_thread(task_messages, agent, task, offered)
            loop_state = LoopState.start(messages)

        async def cancel_asked() -> bool:
            return await asyncio.to_thread(tasks.cancel_requested, task)

        loop = AgentLoop(
            owner=Owner(task.id, task.attempts, agent.id, agent.max_steps, trace_id=task.trace_id),
            provider=provider,
            model=model,
            tools=tools,
            temperature=agent.temperature,
            max_tokens=agent.max_tokens,
            stop=stop,
            should_stop=cancel_asked if tools else None,
            skills=offered,
        )
        try:
            async with asyncio.timeout(task.timeout_seconds):
                outcome = await loop.run(loop_state)
        except TimeoutError:
            detail = f"The attempt took longer than {task.timeout_seconds} s."
            await self._fail(task, "timeout", detail, write=loop.write_pending)
            return
        except Problem as problem:
            retryable = problem.status >= 500 or problem.status == 429
            upstream = getattr(problem, "upstream_status", None)
            if upstream is not None and 400 <= upstream < 500 and upstream not in (408, 429):
                retryable = False  # the model refused the request itself: it would again
            await self._fail(task, problem.code, problem.detail, retryable, loop.write_pending)
            return
        if outcome.kind == "completed":
            done = await self._settle(
                task, tasks.complete, task, outcome.final_text, loop.write_pending
            )
        elif outcome.kind == "stopped":
            done = await self._settle(task, tasks.cancelled, task, loop.write_pending)
        else:
            done = await self._settle(
                task,
                approvals.pause_task,
                task,
                outcome.state.to_json(),
                outcome,
                loop.write_pending,
            )
        if not done:
            raise LeaseLost(task.id)

    async def _step(self, task: Task) -> None:
        """A workflow step other than an agent's (``hub.engine.workflow_steps``)."""
        try:
            async with asyncio.timeout(task.timeout_seconds):
                outcome = await workflow_steps.execute(task)
        except TimeoutError:
            detail = f"The step took longer than {task.timeout_seconds} s."
            await self._fail(task, "timeout", detail)
            return
        if outcome.kind == "fail":
            await self._fail(task, outcome.code, outcome.detail, outcome.retryable, outcome.write)
            return
        if outcome.kind == "complete":
            result = json.dumps(outcome.output, allow_nan=False)
            done = await self._settle(task, tasks.complete, task, result, outcome.write)
        elif outcome.kind == "snooze":
            done = await self._settle(task, tasks.snooze, task, outcome.until, outcome.write)
        else:  # pause: a person decides
            done = await self._settle(
                task, approvals.pause_task, task, None, outcome, outcome.write
            )
        if not done:
            raise LeaseLost(task.id)

    async def _fail(
        self, task: Task, code: str, detail: str, retryable: bool = True, write=None
    ) -> None:
        done = await self._settle(
            task,
            functools.partial(tasks.fail_attempt, retryable=retryable),
            task,
            {"code": code, "detail": detail},
            write or (lambda: None),
        )
        if not done:
            raise LeaseLost(task.id)

    @staticmethod
    async def _settle(task: Task, record, *args) -> bool:
        """Record how an attempt ended (a fenced write: False when the lease is no longer
        this worker's). While the database cannot be reached the write is tried again, with
        backoff, instead of discarding the attempt's work: if the lease lapses meanwhile and
        another worker claims the task, the fence makes this write record nothing."""
        delay = 0.2
        while True:
            try:
                return await asyncio.to_thread(record, *args)
            except DatabaseUnavailable:
                log.warning(
                    "could not record the attempt's outcome; retrying",
                    extra={"task_id": task.id, "retry_in_seconds": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


async def sweep_approvals() -> int:
    """Expire approvals past their time; their tasks resume (denied) through the queue and
    their chat turns here. Returns how many expired."""
    expired = await asyncio.to_thread(approvals.expire_due)
    for approval in expired:
        if approval.turn_id:
            await turns.resume_turn(approval.turn_id)
    return len(expired)
