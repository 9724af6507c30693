"""Tasks (the durable queue) and the steps of tasks and chat turns."""

from __future__ import annotations

import datetime as dt
import functools

import peewee

from db.base import BaseModel, JSONField, Prepared, claim_query, duration_ms, iso

PRIORITIES = ("high", "normal", "low")  # stored as their index: 0 sorts first
RUNNABLE = "pending"
UNFINISHED = ("pending", "running", "waiting_approval")
FINISHED = ("completed", "failed", "cancelled")


class Task(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    description = peewee.TextField()
    agent_id = peewee.CharField(max_length=64, index=True, null=True)
    kind = peewee.CharField(max_length=16, default="agent")
    workflow_run_id = peewee.CharField(max_length=40, null=True, index=True)
    workflow_step = peewee.CharField(max_length=64, null=True)
    capability = peewee.CharField(max_length=64, null=True)
    priority = peewee.SmallIntegerField()
    context = JSONField()
    status = peewee.CharField(max_length=20)
    attempts = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField()
    timeout_seconds = peewee.IntegerField()
    run_at = peewee.DateTimeField()
    lease_owner = peewee.CharField(max_length=64, null=True)
    lease_expires_at = peewee.DateTimeField(null=True)
    cancel_requested = peewee.BooleanField(default=False)
    approval_id = peewee.CharField(max_length=40, null=True)
    loop_state = JSONField(null=True)
    result = peewee.TextField(null=True)
    error = JSONField(null=True)
    trace_id = peewee.CharField(max_length=64, index=True)
    created_by = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    started_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = (
            (("status", "priority", "run_at"), False),
            (("status", "lease_expires_at"), False),
        )

    def to_api(self, steps: list[Step] | None = None) -> dict:
        out = {
            "id": self.id,
            "description": self.description,
            "agent_id": self.agent_id,
            "kind": self.kind,
            "workflow_run_id": self.workflow_run_id,
            "workflow_step": self.workflow_step,
            "capability": self.capability,
            "priority": PRIORITIES[self.priority],
            "context": self.context,
            "status": self.status,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout_seconds,
            "run_at": iso(self.run_at),
            "cancel_requested": self.cancel_requested,
            "approval_id": self.approval_id,
            "result": self.result,
            "error": self.error,
            "trace_id": self.trace_id,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "duration_ms": duration_ms(self.started_at, self.completed_at),
        }
        if steps is not None:
            out["steps"] = [step.to_api() for step in steps]
        return out


class Step(BaseModel):
    """One LLM call or tool call of a task (``owner_id`` ``tsk_…``) or a turn (``trn_…``)."""

    id = peewee.BigAutoField()
    owner_id = peewee.CharField(max_length=40, index=True)
    index = peewee.IntegerField()
    attempt = peewee.IntegerField()
    kind = peewee.CharField(max_length=8)
    name = peewee.CharField(max_length=200)
    status = peewee.CharField(max_length=20)
    input = JSONField()
    output = JSONField(null=True)
    error = peewee.TextField(null=True)
    prompt_tokens = peewee.IntegerField(null=True)
    completion_tokens = peewee.IntegerField(null=True)
    approval_id = peewee.CharField(max_length=40, null=True)
    tool_execution_id = peewee.CharField(max_length=40, null=True)
    started_at = peewee.DateTimeField()
    duration_ms = peewee.FloatField(null=True)

    def to_api(self) -> dict:
        tokens = None
        if self.prompt_tokens is not None:
            tokens = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens or 0,
            }
        return {
            "index": self.index,
            "attempt": self.attempt,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "tokens": tokens,
            "approval_id": self.approval_id,
            "tool_execution_id": self.tool_execution_id,
            "started_at": iso(self.started_at),
            "duration_ms": self.duration_ms,
        }


def get(task_id: str) -> Task | None:
    return Task.get_or_none(Task.id == task_id)


def steps(owner_id: str) -> list[Step]:
    return list(Step.select().where(Step.owner_id == owner_id).order_by(Step.id.asc()))


def next_step_index(owner_id: str) -> int:
    last = Step.select(peewee.fn.MAX(Step.index)).where(Step.owner_id == owner_id).scalar()
    return (last or 0) + 1


def tasks(
    *, status: str | None = None, agent_id: str | None = None, priority: str | None = None
) -> peewee.Select:
    query = Task.select()
    if status:
        query = query.where(Task.status == status)
    if agent_id:
        query = query.where(Task.agent_id == agent_id)
    if priority:
        query = query.where(Task.priority == PRIORITIES.index(priority))
    return query


def due(now: dt.datetime) -> peewee.Select:
    """Pending tasks whose time has come, best first: by priority, then by age (the
    ``(status, priority, run_at)`` index serves both the filter and the order)."""
    return (
        Task.select()
        .where((Task.status == "pending") & (Task.run_at <= now))
        .order_by(Task.priority, Task.run_at, Task.id)
    )


def lapsed(now: dt.datetime) -> peewee.Select:
    """Running tasks whose lease ran out (their worker died), best first."""
    return (
        Task.select()
        .where((Task.status == "running") & (Task.lease_expires_at < now))
        .order_by(Task.priority, Task.run_at, Task.id)
    )


def _runnable(lapsed_only: bool, now: dt.datetime) -> peewee.Select:
    return (lapsed if lapsed_only else due)(now).select(peewee.SQL("1")).limit(1)


def _claim(lapsed_only: bool, now: dt.datetime, worker_id: str, expires: dt.datetime):
    return claim_query(
        (lapsed if lapsed_only else due)(now),
        status="running",
        lease_owner=worker_id,
        lease_expires_at=expires,
        attempts=Task.attempts + 1,
        started_at=peewee.fn.COALESCE(Task.started_at, now),
        updated_at=now,
    )


# Compiled once per engine (building the claim's UPDATE … RETURNING cost Peewee ~2 ms a call,
# most of a claim); the parameter lists are Peewee's own order, checked when compiled.
_probes = {
    flag: Prepared(
        Task,
        functools.partial(_runnable, flag),
        lambda now, flag=flag: ["running" if flag else "pending", now, 1],
    )
    for flag in (False, True)
}
_claims = {
    flag: Prepared(
        Task,
        functools.partial(_claim, flag),
        lambda now, worker_id, expires, flag=flag: [
            "running",
            1,
            worker_id,
            expires,
            now,
            now,
            "running" if flag else "pending",
            now,
            1,
        ],
    )
    for flag in (False, True)
}


def runnable(now: dt.datetime, *, lapsed_only: bool) -> bool:
    """Whether a task is due (or, ``lapsed_only``, a lease has lapsed): a read, no lock."""
    return _probes[lapsed_only].scalar(now) is not None


def claim_next(
    now: dt.datetime, worker_id: str, expires: dt.datetime, *, lapsed_only: bool
) -> Task | None:
    """Inside the caller's write transaction: the best due (or lapsed) task, now running under
    ``worker_id``'s lease until ``expires``, one attempt more; ``None`` when there is none
    (``db.base.claim_query``, compiled)."""
    rows = _claims[lapsed_only].rows(now, worker_id, expires)
    return rows[0] if rows else None


def unfinished_counts(agent_ids: list[str]) -> dict[str, int]:
    rows = (
        Task.select(Task.agent_id, peewee.fn.COUNT(Task.id))
        .where(Task.agent_id.in_(agent_ids) & Task.status.in_(UNFINISHED))
        .group_by(Task.agent_id)
        .tuples()
    )
    return dict(rows)


def queue_counts(now: dt.datetime) -> dict:
    due = Task.run_at <= now
    rows = (
        Task.select(
            Task.status,
            Task.priority,
            peewee.fn.SUM(peewee.Case(None, [(due, 1)], 0)),
            peewee.fn.COUNT(Task.id),
            peewee.fn.MIN(peewee.Case(None, [(due, Task.run_at)], None)),
        )
        .where(Task.status.in_(UNFINISHED))
        .group_by(Task.status, Task.priority)
        .tuples()
    )
    depth = dict.fromkeys(PRIORITIES, 0)
    scheduled = running = waiting = 0
    oldest = None
    for status, priority, due_count, count, first in rows:
        if status == "pending":
            depth[PRIORITIES[priority]] += due_count
            scheduled += count - due_count
            if isinstance(first, str):
                first = dt.datetime.fromisoformat(first)
            if first is not None:
                oldest = first if oldest is None else min(oldest, first)
        elif status == "running":
            running += count
        else:
            waiting += count
    return {
        "depth": {**depth, "total": sum(depth.values())},
        "scheduled": scheduled,
        "running": running,
        "waiting_approval": waiting,
        "oldest_waiting_seconds": (
            None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 3)
        ),
    }
