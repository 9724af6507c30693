"""Approvals: a person's decision on a tool call an agent wants to make."""

from __future__ import annotations

import datetime as dt

import peewee

from db.base import BaseModel, JSONField, iso


class Approval(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    status = peewee.CharField(max_length=16, index=True)
    tool = peewee.CharField(max_length=64)
    arguments = JSONField()
    tool_call_id = peewee.CharField(max_length=200)
    agent_id = peewee.CharField(max_length=64, null=True)
    task_id = peewee.CharField(max_length=40, null=True, index=True)
    turn_id = peewee.CharField(max_length=40, null=True, index=True)
    session_id = peewee.CharField(max_length=40, null=True)
    workflow_run_id = peewee.CharField(max_length=40, null=True)
    workflow_step = peewee.CharField(max_length=64, null=True)
    expires_at = peewee.DateTimeField(index=True)
    created_at = peewee.DateTimeField()
    decided_at = peewee.DateTimeField(null=True)
    decided_by = peewee.CharField(max_length=64, null=True)
    comment = peewee.TextField(null=True)

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "tool": self.tool,
            "arguments": self.arguments,
            "tool_call_id": self.tool_call_id,
            "agent_id": self.agent_id,
            "task_id": self.task_id,
            "turn_id": self.turn_id,
            "session_id": self.session_id,
            "workflow_run_id": self.workflow_run_id,
            "workflow_step": self.workflow_step,
            "expires_at": iso(self.expires_at),
            "created_at": iso(self.created_at),
            "decided_at": iso(self.decided_at),
            "decided_by": self.decided_by,
            "comment": self.comment,
        }


def get(approval_id: str) -> Approval | None:
    return Approval.get_or_none(Approval.id == approval_id)


def approvals(*, status: str | None = None) -> peewee.Select:
    query = Approval.select()
    if status:
        query = query.where(Approval.status == status)
    return query


def for_call(owner_id: str, tool_call_id: str) -> Approval | None:
    """The approval asked for one tool call of a task or a turn, if any."""
    owner = Approval.task_id if owner_id.startswith("tsk_") else Approval.turn_id
    return (
        Approval.select()
        .where((owner == owner_id) & (Approval.tool_call_id == tool_call_id))
        .order_by(Approval.id.desc())
        .first()
    )


def expired(now: dt.datetime, limit: int = 100) -> list[Approval]:
    return list(
        Approval.select()
        .where((Approval.status == "pending") & (Approval.expires_at <= now))
        .order_by(Approval.expires_at)
        .limit(limit)
    )
