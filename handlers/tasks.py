"""Background work for agents, the durable queue and its workers."""

from __future__ import annotations

from db import tasks
from db.pagination import list_page
from db.tasks import Task
from generated.models import TaskBatchCreate, TaskCreate
from handlers import body_fields
from hub.core.problems import require
from hub.http import context
from hub.runtime import reports
from hub.services import tasks as service
from hub.services.toolkit import redacted_for_viewer


def list_tasks(limit=50, cursor=None, status=None, agent_id=None, priority=None):
    """List tasks, newest first."""
    query = tasks.tasks(status=status, agent_id=agent_id, priority=priority)
    return list_page(query, Task.id, limit=limit, cursor=cursor, descending=True), 200


def create_task(body):
    """Hand an agent a piece of work."""
    fields = body_fields(TaskCreate, body)
    task = service.create(fields, created_by=context.actor_id())
    return task.to_api([]), 201, {"Location": f"/api/v1/tasks/{task.id}"}


def create_tasks(body):
    """Hand agents many pieces of work at once (all or nothing)."""
    batch = body_fields(TaskBatchCreate, body)
    created = service.create_many(batch["tasks"], created_by=context.actor_id())
    return {"items": [task.to_api([]) for task in created]}, 200


def get_task(task_id):
    """One task with its steps and result."""
    task = require(tasks.get(task_id), "task", task_id)
    return context.for_caller(task.to_api(tasks.steps(task.id)), redacted_for_viewer), 200


def cancel_task(task_id):
    """Cancel a task (pending or waiting at once; running at its next step)."""
    task = service.cancel(task_id)
    return task.to_api(tasks.steps(task.id)), 200


def retry_task(task_id):
    """Queue a failed or cancelled task again, with fresh attempts."""
    task = service.retry(task_id)
    return task.to_api(tasks.steps(task.id)), 200


def get_queue():
    """Queue depth per priority, running and waiting counts, oldest wait, workers."""
    return reports.queue_snapshot(), 200
