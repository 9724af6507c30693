"""A trace: the events, tasks, chat turns, tool executions and workflow runs that carry one
trace id."""

from __future__ import annotations

from db.events import Event
from db.sessions import Turn
from db.tasks import Task
from db.tools import ToolExecution
from db.workflows import WorkflowRun


def gather(trace_id: str) -> dict | None:
    """Everything of the trace, each kind oldest first; None when nothing carries it."""
    found = {
        "trace_id": trace_id,
        "events": [
            e.to_api() for e in Event.select().where(Event.trace_id == trace_id).order_by(Event.id)
        ],
        "tasks": [
            t.to_api()
            for t in Task.select()
            .where(Task.trace_id == trace_id)
            .order_by(Task.created_at, Task.id)
        ],
        "turns": [
            t.to_api()
            for t in Turn.select()
            .where(Turn.trace_id == trace_id)
            .order_by(Turn.created_at, Turn.id)
        ],
        "tool_executions": [
            x.to_api()
            for x in ToolExecution.select()
            .where(ToolExecution.trace_id == trace_id)
            .order_by(ToolExecution.created_at, ToolExecution.id)
        ],
        "workflow_runs": [
            r.to_api()
            for r in WorkflowRun.select()
            .where(WorkflowRun.trace_id == trace_id)
            .order_by(WorkflowRun.created_at, WorkflowRun.id)
        ],
    }
    if not any(found[kind] for kind in ("events", "tasks", "turns", "tool_executions")):
        return None
    return found
