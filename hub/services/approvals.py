"""Approvals: asked by the agent loop for a tool with ``requires_approval``, decided by a
person (or expired, which counts as denied), and the waiting task or chat turn resumed.

Deciding is a conditional update (``WHERE status = 'pending'``), so two people approving at
once, or a person and the expiry sweeper, produce exactly one decision; the others get 409.
"""

from __future__ import annotations

import datetime as dt

from db import approvals
from db.approvals import Approval
from db.base import iso, new_id, utcnow, write_transaction
from db.sessions import Turn
from db.tasks import Task
from hub.core.problems import Conflict, require
from hub.events import log as events
from hub.services import notifications, tasks
from hub.settings import current_settings


def request(
    *,
    tool: str,
    arguments: dict,
    tool_call_id: str,
    agent_id: str | None,
    owner_id: str,
    session_id: str | None = None,
    workflow_run_id: str | None = None,
    workflow_step: str | None = None,
    title: str | None = None,
    message: str | None = None,
    ttl_seconds: float | None = None,
) -> Approval:
    """A pending approval and its notification (inside the caller's transaction): asked by
    an agent for a tool call, or by a workflow's approval step (``workflow_run_id``,
    ``workflow_step``; ``title`` and ``message`` then say what is asked)."""
    now = utcnow()
    ttl = ttl_seconds or current_settings().approval_ttl_seconds
    is_task = owner_id.startswith("tsk_")
    approval = Approval.create(
        id=new_id("apr"),
        status="pending",
        tool=tool,
        arguments=arguments,
        tool_call_id=tool_call_id,
        agent_id=agent_id,
        task_id=owner_id if is_task else None,
        turn_id=None if is_task else owner_id,
        session_id=session_id,
        workflow_run_id=workflow_run_id,
        workflow_step=workflow_step,
        expires_at=now + dt.timedelta(seconds=ttl),
        created_at=now,
    )
    deadline = f"Approve or deny {approval.id} before {approval.expires_at:%Y-%m-%d %H:%M} UTC."
    notifications.create(
        kind="approval_requested",
        severity="warning",
        title=title or f"Agent {agent_id} asks to run {tool}",
        message=f"{message}\n\n{deadline}" if message else deadline,
        subject=approval.id,
    )
    events.emit(
        "approval.requested",
        subject=approval.id,
        trace_id=_trace_of(approval),
        payload={
            "approval_id": approval.id,
            "tool": tool,
            "agent_id": agent_id,
            "task_id": approval.task_id,
            "turn_id": approval.turn_id,
            "workflow_run_id": workflow_run_id,
            "workflow_step": workflow_step,
            "expires_at": iso(approval.expires_at),
        },
    )
    return approval


def _trace_of(approval: Approval) -> str | None:
    """The trace of the task or chat turn that asked."""
    if approval.task_id:
        return Task.select(Task.trace_id).where(Task.id == approval.task_id).scalar()
    if approval.turn_id:
        return Turn.select(Turn.trace_id).where(Turn.id == approval.turn_id).scalar()
    return None


def _settle(approval: Approval, status: str, actor: str | None, comment: str | None) -> bool:
    """Record the decision if nobody did first; resume a waiting task. True when it won."""
    now = utcnow()
    won = (
        Approval.update(status=status, decided_at=now, decided_by=actor, comment=comment)
        .where((Approval.id == approval.id) & (Approval.status == "pending"))
        .execute()
    )
    if won:
        events.emit(
            "approval.decided",
            subject=approval.id,
            trace_id=_trace_of(approval),
            payload={
                "approval_id": approval.id,
                "status": status,
                "decided_by": actor,
                "tool": approval.tool,
                "task_id": approval.task_id,
                "turn_id": approval.turn_id,
            },
        )
    if won and approval.task_id:
        tasks.resume(approval.task_id, approval.id)
    return bool(won)


def decide(
    approval_id: str, *, approve: bool, actor: str | None, comment: str | None
) -> tuple[Approval, bool]:
    """Approve or deny; returns the approval and whether it expired before the decision
    (then it counts as denied and the caller answers 409)."""
    with write_transaction():
        approval = require(approvals.get(approval_id), "approval", approval_id)
        if approval.status != "pending":
            raise Conflict(
                f"Approval {approval_id!r} is already {approval.status}.", code="approval_decided"
            )
        if approval.expires_at <= utcnow():
            _settle(approval, "expired", None, "expired before a decision")
            return approvals.get(approval_id), True
        if not _settle(approval, "approved" if approve else "denied", actor, comment):
            raise Conflict(f"Approval {approval_id!r} was just decided.", code="approval_decided")
    return approvals.get(approval_id), False


def expire_due(limit: int = 100) -> list[Approval]:
    """Expire pending approvals past their time; returns those this call expired."""
    done = []
    for approval in approvals.expired(utcnow(), limit):
        with write_transaction():
            if _settle(approval, "expired", None, "expired before a decision"):
                done.append(approval)
    return done


# --- the waiting side --------------------------------------------------------------------


def pause_task(task: Task, loop_state: dict, outcome, write_steps):
    """Wait for a person: store the loop's state and the approval; free the worker.
    Returns the approval, or ``None`` when the lease was lost."""
    try:
        with write_transaction():
            approval = outcome.approval
            if approval is None:
                approval = request(**outcome.ask)
            done = tasks.fenced_update(
                task, status="waiting_approval", approval_id=approval.id, loop_state=loop_state
            )
            if not done:
                raise LeaseLost  # roll back the approval (and its events) too
            write_steps()
            task.status = "waiting_approval"
            tasks.event("waiting_approval", task, approval_id=approval.id)
    except LeaseLost:
        return None
    return approval


class LeaseLost(Exception):
    """The task's lease passed to another worker: roll the pause back."""
