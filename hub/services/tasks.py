"""The task queue: create, claim with a lease, finish, retry with backoff, cancel, dead letters.

A worker claims the best runnable task (highest priority, then oldest ``run_at``) in one
statement: on PostgreSQL ``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)``, so any
number of processes share the queue and never claim the same row; on SQLite the same update
inside an immediate transaction (one writer at a time). The claim takes a lease
(``lease_owner``, ``lease_expires_at``) that the worker renews while it runs; a task whose
lease lapsed (its worker died) is runnable again, and that lost attempt counts.

Every write after the claim is fenced on ``(lease_owner, attempts)``: a worker that lost its
lease (it stalled past the expiry and another worker took the task) cannot complete, fail
or pause the task any more; its work is discarded. So each attempt's outcome is recorded
exactly once, and a task completes exactly once.
"""

from __future__ import annotations

import datetime as dt
import uuid

from db import agents, tasks
from db.approvals import Approval
from db.base import iso as db_iso
from db.base import new_id, utcnow, write_transaction
from db.dead_letters import DeadLetter
from db.tasks import PRIORITIES, Task
from hub.core import signals, timeparse
from hub.core.problems import Conflict, Problem, Unprocessable, require
from hub.services import audit, notifications, task_events, workflow_runs
from hub.settings import current_settings


def _route(agent_id: str | None, capability: str | None) -> str:
    """The agent a new task goes to (422 when none fits)."""
    if agent_id:
        agent = agents.get(agent_id)
        if agent is None:
            raise Unprocessable(
                f"No agent with id {agent_id!r}.",
                code="agent_not_found",
                errors=[{"field": "body.agent_id", "message": "no such agent"}],
            )
        if capability and capability not in agent.capabilities:
            raise Unprocessable(
                f"Agent {agent_id!r} does not declare the capability {capability!r}.",
                code="capability_mismatch",
                errors=[{"field": "body.capability", "message": "not declared by the agent"}],
            )
        return agent.id
    if not capability:
        raise Unprocessable(
            "Say which agent should do the task: agent_id or capability.",
            code="no_route",
            errors=[{"field": "body.agent_id", "message": "agent_id or capability is required"}],
        )
    candidates = [a.id for a in agents.listing(status="active", capability=capability)]
    if not candidates:
        raise Unprocessable(
            f"No active agent declares the capability {capability!r}.",
            code="no_agent_for_capability",
            errors=[{"field": "body.capability", "message": "no active agent declares it"}],
        )
    load = tasks.unfinished_counts(candidates)
    return min(candidates, key=lambda a: (load.get(a, 0), a))


def create(body: dict, *, created_by: str | None = None, trace_id: str | None = None) -> Task:
    now = utcnow()
    run_at = timeparse.parse_timestamp(body.get("run_at"), "run_at", "body")
    with write_transaction():
        task = _insert(body, run_at or now, now, created_by, trace_id)
        audit.created("tasks", task.id)
    signals.tasks_ready.send()
    return task


def create_many(bodies: list[dict], *, created_by: str | None = None) -> list[Task]:
    """Every one of ``bodies`` queued in ONE write transaction, or none: the first refused
    body's problem is raised with its fields named ``body.tasks.<i>.…`` (the request
    validator's notation). Routing by capability
    counts the batch's own tasks (they are in the transaction already)."""
    now = utcnow()
    run_ats = [
        timeparse.parse_timestamp(b.get("run_at"), f"tasks.{i}.run_at", "body")
        for i, b in enumerate(bodies)
    ]
    created: list[Task] = []
    with write_transaction():
        for i, (body, run_at) in enumerate(zip(bodies, run_ats, strict=True)):
            try:
                created.append(_insert(body, run_at or now, now, created_by, None))
            except Problem as problem:
                raise _at(problem, f"tasks.{i}") from None
    signals.tasks_ready.send()
    return created


def _at(problem: Problem, where: str) -> Problem:
    """``problem`` about the body member ``where`` (``tasks.3``) of a batch."""
    problem.detail = f"body.{where}: {problem.detail}"
    for error in problem.errors or []:
        field = error.get("field", "")
        if field.startswith("body."):
            error["field"] = f"body.{where}.{field.removeprefix('body.')}"
    return problem


def _insert(
    body: dict, run_at: dt.datetime, now: dt.datetime, created_by: str | None, trace_id: str | None
) -> Task:
    """One new pending task and its ``task.created`` event, inside the caller's transaction."""
    agent_id = _route(body.get("agent_id"), body.get("capability"))
    task = Task.create(
        id=new_id("tsk"),
        description=body["description"],
        agent_id=agent_id,
        capability=body.get("capability"),
        priority=PRIORITIES.index(body.get("priority") or "normal"),
        context=body.get("context") or {},
        status="pending",
        max_attempts=body.get("max_attempts") or 3,
        timeout_seconds=body.get("timeout_seconds") or 300,
        run_at=run_at,
        trace_id=trace_id or uuid.uuid4().hex,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    event("created", task, description=task.description[:500], created_by=created_by)
    return task


def event(kind: str, task: Task, **extra) -> None:
    """``task.<kind>``, in the transaction that made the change; a task that executes a
    workflow step moves its run on in the same transaction."""
    task_events.emit(kind, task, **extra)
    if task.workflow_run_id:
        workflow_runs.on_task(kind, task, extra)


def cancel(task_id: str) -> Task:
    with write_transaction():
        task = require(tasks.get(task_id), "task", task_id)
        now = utcnow()
        if task.status in ("pending", "waiting_approval"):
            if task.approval_id:
                Approval.update(
                    status="expired", decided_at=now, comment="the task was cancelled"
                ).where(
                    (Approval.id == task.approval_id) & (Approval.status == "pending")
                ).execute()
            task.status, task.completed_at, task.approval_id = "cancelled", now, None
            task.loop_state = None
            event("cancelled", task)
        elif task.status == "running":
            task.cancel_requested = True
        else:
            raise Conflict(f"Task {task_id!r} is already {task.status}.", code="task_finished")
        task.updated_at = now
        task.save()
    return task


def retry(task_id: str) -> Task:
    with write_transaction():
        task = require(tasks.get(task_id), "task", task_id)
        if task.status not in ("failed", "cancelled"):
            raise Conflict(
                f"Only failed or cancelled tasks can be retried; {task_id!r} is {task.status}.",
                code="task_not_retryable",
            )
        _requeue(task)
        event("retried", task)
        DeadLetter.update(status="retried", resolved_at=utcnow()).where(
            (DeadLetter.subject_id == task.id) & (DeadLetter.status == "open")
        ).execute()
    signals.tasks_ready.send()
    return task


def _requeue(task: Task) -> None:
    now = utcnow()
    task.status, task.attempts, task.run_at = "pending", 0, now
    task.error = task.result = task.loop_state = task.approval_id = None
    task.cancel_requested = False
    task.completed_at = None
    task.updated_at = now
    task.save()


def resume(task_id: str, approval_id: str) -> None:
    """An approval was decided: the task may run again (inside the caller's transaction).
    Resuming is not a new attempt: the claim's increment is taken back here."""
    resumed = (
        Task.update(
            status="pending",
            run_at=utcnow(),
            approval_id=None,
            attempts=Task.attempts - 1,
            updated_at=utcnow(),
        )
        .where(
            (Task.id == task_id)
            & (Task.status == "waiting_approval")
            & (Task.approval_id == approval_id)
        )
        .execute()
    )
    if resumed:
        event("resumed", tasks.get(task_id), approval_id=approval_id)
    signals.tasks_ready.send()


# --- the worker's side -------------------------------------------------------------------


def claim(worker_id: str, lease_seconds: float) -> Task | None:
    """Take the best runnable task, or ``None`` when there is none."""
    while True:
        now = utcnow()
        lapsed_only = False
        if not tasks.runnable(now, lapsed_only=False):
            lapsed_only = True
            if not tasks.runnable(now, lapsed_only=True):  # idle: no write lock taken
                return None
        expires = now + dt.timedelta(seconds=lease_seconds)
        with write_transaction():
            task = tasks.claim_next(now, worker_id, expires, lapsed_only=lapsed_only)
            if task is None:
                return None
            if task.attempts <= task.max_attempts and not task.cancel_requested:
                event("started", task, worker=worker_id)
                return task
            # Its worker died during the last attempt, or it was cancelled while running.
            if task.cancel_requested:
                _cancelled(task, now)
            else:
                _fail_for_good(
                    task, {"code": "lease_expired", "detail": "The worker stopped responding."}
                )


def _fence(task: Task):
    return (
        (Task.id == task.id)
        & (Task.lease_owner == task.lease_owner)
        & (Task.attempts == task.attempts)
        & (Task.status == "running")
    )


def renew(task: Task, lease_seconds: float) -> tuple[bool, bool]:
    """Extend the lease; returns (still ours, cancel requested)."""
    with write_transaction():
        kept = (
            Task.update(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_seconds))
            .where(_fence(task))
            .execute()
        )
        if not kept:
            return False, False
        return True, bool(Task.select(Task.cancel_requested).where(Task.id == task.id).scalar())


def describe(task: Task, description: str, write) -> bool:
    """Set a running task's description (a workflow agent step's prompt, once rendered) and
    run ``write`` in the same transaction; False, writing nothing, when the lease was lost."""
    with write_transaction():
        done = bool(Task.update(description=description).where(_fence(task)).execute())
        if done:
            task.description = description
            write()
    return done


def cancel_requested(task: Task) -> bool:
    return bool(Task.select(Task.cancel_requested).where(Task.id == task.id).scalar())


def _released(**fields) -> dict:
    """``fields`` plus those that hand the task's lease back."""
    return {"lease_owner": None, "lease_expires_at": None, "updated_at": utcnow(), **fields}


def fenced_update(task: Task, **fields) -> bool:
    return bool(Task.update(**_released(**fields)).where(_fence(task)).execute())


def _record(task: Task, write_steps, **fields) -> bool:
    """End the attempt with ``fields`` and its steps, unless the lease was lost."""
    with write_transaction():
        done = fenced_update(task, **fields)
        if done:
            write_steps()
            event(fields["status"], task, error=fields.get("error"))
    return done


def complete(task: Task, result: str, write_steps) -> bool:
    return _record(
        task,
        write_steps,
        status="completed",
        result=result,
        error=None,
        loop_state=None,
        completed_at=utcnow(),
    )


def cancelled(task: Task, write_steps) -> bool:
    return _record(task, write_steps, status="cancelled", completed_at=utcnow())


def _cancelled(task: Task, now: dt.datetime) -> None:
    Task.update(**_released(status="cancelled", completed_at=now)).where(
        Task.id == task.id
    ).execute()
    event("cancelled", task)


def snooze(task: Task, until: dt.datetime, write=lambda: None) -> bool:
    """Put a running task back to sleep until ``until`` (a workflow ``wait`` step whose
    time has not come): pending again, its attempt not counted, no worker held."""
    with write_transaction():
        done = fenced_update(task, status="pending", attempts=Task.attempts - 1, run_at=until)
        if done:
            write()
            task.status = "pending"
            event("waiting", task, run_at=db_iso(until))
    return done


def hand_back(task: Task) -> None:
    """Return a held task to the queue without counting the attempt (a clean stop)."""
    fenced_update(task, status="pending", attempts=Task.attempts - 1, run_at=utcnow())


def fail_attempt(task: Task, error: dict, write_steps, *, retryable: bool = True) -> bool:
    """Record a failed attempt: back off and retry, or fail for good (dead letter)."""
    settings = current_settings()
    with write_transaction():
        if not Task.select().where(_fence(task)).exists():
            return False
        write_steps()
        if retryable and task.attempts < task.max_attempts:
            delay = min(
                settings.task_backoff_seconds * 2 ** (task.attempts - 1),
                settings.task_backoff_max_seconds,
            )
            run_at = utcnow() + dt.timedelta(seconds=delay)
            fenced_update(task, status="pending", error=error, loop_state=None, run_at=run_at)
            task.status = "pending"
            event("retrying", task, error=error, run_at=db_iso(run_at))
        else:
            task.error = error
            _fail_for_good(task, error)
    return True


def _fail_for_good(task: Task, error: dict) -> None:
    now = utcnow()
    Task.update(**_released(status="failed", error=error, loop_state=None, completed_at=now)).where(
        Task.id == task.id
    ).execute()
    DeadLetter.create(
        id=new_id("dlq"),
        kind="task",
        subject_id=task.id,
        status="open",
        reason=f"Task failed after {min(task.attempts, task.max_attempts)} attempt(s).",
        error=error,
        attempts=min(task.attempts, task.max_attempts),
        created_at=now,
    )
    notifications.create(
        kind="task_failed",
        severity="error",
        title=f"Task {task.id} failed",
        message=f"{error.get('code')}: {error.get('detail')}",
        subject=task.id,
    )
    event("failed", task, error=error)


def requeue_dead(task_id: str) -> None:
    """Retry from the dead-letter list (inside the caller's transaction)."""
    task = tasks.get(task_id)
    if task is not None and task.status in ("failed", "cancelled"):
        _requeue(task)
        event("retried", task)
