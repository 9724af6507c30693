"""``task.<kind>`` events: one shape for every change of a task, emitted in the transaction
that made it (by the queue, ``hub.services.tasks``, and by the workflow state machine,
``hub.services.workflow_runs``, for the tasks that execute workflow steps)."""

from __future__ import annotations

from db.tasks import Task
from hub.events import log as events


def emit(kind: str, task: Task, **extra) -> None:
    payload = {
        "task_id": task.id,
        "agent_id": task.agent_id,
        "status": kind if kind in ("completed", "failed", "cancelled") else task.status,
        "attempt": task.attempts,
        **extra,
    }
    if task.workflow_run_id:
        payload["workflow_run_id"] = task.workflow_run_id
        payload["workflow_step"] = task.workflow_step
    events.emit(f"task.{kind}", subject=task.id, trace_id=task.trace_id, payload=payload)
