"""Human decisions on tool calls that need them."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from db import approvals as db_approvals
from db.approvals import Approval
from db.pagination import list_page
from hub.core.problems import Conflict, require
from hub.engine import turns as chat
from hub.http import context
from hub.services import approvals


def list_approvals(limit=50, cursor=None, status=None):
    """Approvals, newest first."""
    query = db_approvals.approvals(status=status)
    return list_page(query, Approval.id, limit=limit, cursor=cursor, descending=True), 200


def get_approval(approval_id):
    """What is asked, by whom, until when."""
    return require(db_approvals.get(approval_id), "approval", approval_id).to_api(), 200


async def _decide(approval_id: str, body: dict | None, *, approve: bool):
    comment = (body or {}).get("comment")
    approval, expired = await run_in_threadpool(
        approvals.decide, approval_id, approve=approve, actor=context.actor_id(), comment=comment
    )
    if approval.turn_id:
        await chat.resume_turn(approval.turn_id)
    if expired:
        raise Conflict(
            f"Approval {approval_id!r} expired before this decision; it counts as denied.",
            code="approval_expired",
        )
    return approval.to_api(), 200


async def approve(approval_id, body=None):
    """Approve the tool call; the waiting task or chat turn resumes and runs it."""
    return await _decide(approval_id, body, approve=True)


async def deny(approval_id, body=None):
    """Deny the tool call; the model gets the denial as the tool's result."""
    return await _decide(approval_id, body, approve=False)
