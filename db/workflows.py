"""Workflows: definitions (every version kept, immutable), their runs, and each run's steps.

A run is pinned to ``(workflow_id, version)``; its steps are one row each (``run_id``,
``step_id`` unique: a step runs at most once per run, its retries being attempts of the
task that executes it, ``task_id``).
"""

from __future__ import annotations

import datetime as dt

import peewee

from db.base import BaseModel, JSONField, Versioned, duration_ms, is_postgres, iso
from db.tasks import Step

LIVE_STEPS = ("pending", "running", "waiting", "waiting_approval")
OUTPUT_STEP = "$output"  # the step that renders the run's output template


class Workflow(Versioned, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=64)
    version = peewee.IntegerField()
    definition = JSONField()
    sha256 = peewee.CharField(max_length=64)
    created_by = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            **self.definition,
            "version": self.version,
            "sha256": self.sha256,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class WorkflowVersion(BaseModel):
    id = peewee.BigAutoField()
    workflow_id = peewee.CharField(max_length=64, index=True)
    version = peewee.IntegerField()
    definition = JSONField()
    sha256 = peewee.CharField(max_length=64)
    created_by = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField()

    class Meta:
        indexes = ((("workflow_id", "version"), True),)

    def to_api(self) -> dict:
        return {
            "workflow_id": self.workflow_id,
            "version": self.version,
            "sha256": self.sha256,
            "definition": self.definition,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
        }


class WorkflowRun(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    workflow_id = peewee.CharField(max_length=64, index=True)
    version = peewee.IntegerField()
    sha256 = peewee.CharField(max_length=64)  # of the version: a deleted-and-remade id differs
    status = peewee.CharField(max_length=16, index=True)
    input = JSONField()
    output = JSONField(null=True)
    error = JSONField(null=True)
    cancel_requested = peewee.BooleanField(default=False)
    rerun_of = peewee.CharField(max_length=40, null=True)
    trace_id = peewee.CharField(max_length=64, index=True)
    created_by = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()
    completed_at = peewee.DateTimeField(null=True)

    def to_api(self, steps: list[RunStep] | None = None, tokens: dict | None = None) -> dict:
        out = {
            "id": self.id,
            "workflow_id": self.workflow_id,
            "version": self.version,
            "sha256": self.sha256,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "rerun_of": self.rerun_of,
            "trace_id": self.trace_id,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "completed_at": iso(self.completed_at),
            "duration_ms": duration_ms(self.created_at, self.completed_at),
        }
        if steps is not None:
            tokens = tokens or {}
            out["steps"] = [step.to_api(tokens.get(step.task_id)) for step in steps]
        return out


class RunStep(BaseModel):
    id = peewee.BigAutoField()
    run_id = peewee.CharField(max_length=40, index=True)
    step_id = peewee.CharField(max_length=64)
    kind = peewee.CharField(max_length=16)
    status = peewee.CharField(max_length=20)
    branch = peewee.CharField(max_length=80, null=True)  # "<parallel step>/<branch index>"
    attempts = peewee.IntegerField(default=0)
    task_id = peewee.CharField(max_length=40, null=True, index=True)
    approval_id = peewee.CharField(max_length=40, null=True)
    input = JSONField(null=True)  # what the step ran on: the rendered prompt, arguments …
    output = JSONField(null=True)
    error = JSONField(null=True)
    followed = peewee.BooleanField(default=False)  # the run went on from it (completed steps)
    created_at = peewee.DateTimeField()
    started_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("run_id", "step_id"), True),)

    def to_api(self, tokens: dict | None = None) -> dict:
        return {
            "step_id": self.step_id,
            "kind": self.kind,
            "status": self.status,
            "branch": self.branch,
            "attempts": self.attempts,
            "task_id": self.task_id,
            "approval_id": self.approval_id,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "tokens": tokens,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "duration_ms": duration_ms(self.started_at, self.completed_at),
        }


# --- queries -----------------------------------------------------------------------------


def get(workflow_id: str) -> Workflow | None:
    return Workflow.get_or_none(Workflow.id == workflow_id)


def workflows() -> peewee.Select:
    return Workflow.select()


def versions(workflow_id: str) -> peewee.Select:
    return WorkflowVersion.select().where(WorkflowVersion.workflow_id == workflow_id)


def version(workflow_id: str, number: int) -> WorkflowVersion | None:
    return WorkflowVersion.get_or_none(
        (WorkflowVersion.workflow_id == workflow_id) & (WorkflowVersion.version == number)
    )


def get_run(run_id: str) -> WorkflowRun | None:
    return WorkflowRun.get_or_none(WorkflowRun.id == run_id)


def lock_run(run_id: str) -> WorkflowRun | None:
    """The run, locked for the rest of the caller's write transaction (PostgreSQL: ``FOR
    UPDATE``; SQLite's write transactions already run one at a time): every change of one
    run's state happens under this lock, so two processes settling two parallel branches
    at once see each other's outcome."""
    query = WorkflowRun.select().where(WorkflowRun.id == run_id)
    if is_postgres():
        query = query.for_update()
    return query.first()


def runs(
    *, status: str | None = None, workflow_id: str | None = None, since: dt.datetime | None = None
) -> peewee.Select:
    query = WorkflowRun.select()
    if status:
        query = query.where(WorkflowRun.status == status)
    if workflow_id:
        query = query.where(WorkflowRun.workflow_id == workflow_id)
    if since is not None:
        query = query.where(WorkflowRun.created_at >= since)
    return query


def unfinished_runs(workflow_id: str) -> int:
    return (
        WorkflowRun.select()
        .where((WorkflowRun.workflow_id == workflow_id) & (WorkflowRun.status == "running"))
        .count()
    )


def run_steps(run_id: str) -> list[RunStep]:
    return list(RunStep.select().where(RunStep.run_id == run_id).order_by(RunStep.id))


def run_step(run_id: str, step_id: str) -> RunStep | None:
    return RunStep.get_or_none((RunStep.run_id == run_id) & (RunStep.step_id == step_id))


def step_tokens(task_ids: list[str]) -> dict[str, dict]:
    """Tokens the model calls of these tasks used, per task."""
    if not task_ids:
        return {}
    rows = (
        Step.select(
            Step.owner_id,
            peewee.fn.SUM(Step.prompt_tokens),
            peewee.fn.SUM(Step.completion_tokens),
        )
        .where(Step.owner_id.in_(task_ids) & Step.prompt_tokens.is_null(False))
        .group_by(Step.owner_id)
        .tuples()
    )
    return {
        owner: {"prompt_tokens": int(prompt or 0), "completion_tokens": int(completion or 0)}
        for owner, prompt, completion in rows
    }
