"""Workflow runs, the state machine: a run's steps are queued as tasks, and each change of
such a task moves the run on, in the same transaction as the change.

Every step but ``parallel`` is executed by a task (``task.kind`` the step kind; an agent
step's task is an ordinary agent task), so the queue's claim, leases, fenced writes,
backoff, timeouts and dead letters apply to steps as they do to tasks. The queue calls
:func:`on_task` from its ``task.<kind>`` event (``hub.services.tasks.event``), inside the
transaction that changed the task, after taking this run's lock:

- ``started``, ``retrying``, ``waiting``, ``waiting_approval``, ``resumed``: the step's
  status follows its task's;
- ``completed``: the step's output is recorded, and the run goes on (the next step is
  queued, a parallel step joins, or the run ends) in that same transaction. A step's outcome
  is therefore written exactly once: the task's completion is fenced on its lease, and the
  next step exists if and only if that completion committed;
- ``failed`` (out of attempts, or not retryable): the run fails, its other live steps are
  cancelled;
- ``cancelled``: the run is cancelled (``cancel`` asked for it, or someone cancelled the
  step's task).

Nothing here renders a template or runs a filter: templates are user programs, rendered by
the worker that executes the step (``hub.engine.workflow_steps``), never inside a
transaction. Entering a step is structural (a row and a task), so it can happen here.
"""

from __future__ import annotations

import datetime as dt
import json

import jsonschema

from db import workflows
from db.approvals import Approval
from db.base import after_commit, iso, new_id, utcnow, write_transaction
from db.dead_letters import DeadLetter
from db.tasks import Task
from db.workflows import LIVE_STEPS, OUTPUT_STEP, RunStep, WorkflowRun
from hub.core import signals
from hub.core.flowgraph import Graph
from hub.core.problems import Unprocessable, require
from hub.events import log as events
from hub.services import audit, task_events

FINISHED_STEPS = ("completed", "failed", "cancelled")
_definitions: dict[tuple[str, int, str], tuple[dict, Graph]] = {}  # versions never change


def definition(run: WorkflowRun) -> tuple[dict, Graph]:
    """The definition ``run`` is pinned to, and its graph."""
    key = (run.workflow_id, run.version, run.sha256)
    found = _definitions.get(key)
    if found is None:
        row = workflows.version(run.workflow_id, run.version)
        if row is None or row.sha256 != run.sha256:
            raise LookupError(f"workflow {run.workflow_id!r} version {run.version} is gone")
        found = (row.definition, Graph(row.definition["steps"]))
        if len(_definitions) > 1000:
            _definitions.clear()
        _definitions[key] = found
    return found


# --- events ------------------------------------------------------------------------------


def run_event(kind: str, run: WorkflowRun, **extra) -> None:
    events.emit(
        f"workflow.run.{kind}",
        subject=run.id,
        trace_id=run.trace_id,
        payload={
            "run_id": run.id,
            "workflow_id": run.workflow_id,
            "version": run.version,
            "status": run.status,
            **extra,
        },
    )


def step_event(kind: str, run: WorkflowRun, row: RunStep, **extra) -> None:
    events.emit(
        f"workflow.step.{kind}",
        subject=run.id,
        trace_id=run.trace_id,
        payload={
            "run_id": run.id,
            "workflow_id": run.workflow_id,
            "step_id": row.step_id,
            "kind": row.kind,
            "status": row.status,
            "attempt": row.attempts,
            "task_id": row.task_id,
            **extra,
        },
    )


# --- starting and entering steps -------------------------------------------------------------


def check_input(definition: dict, run_input: dict, field: str = "body.input") -> None:
    """A 422 naming each member of ``run_input`` that breaks the workflow's input schema."""
    validator = jsonschema.Draft202012Validator(definition["input_schema"])
    errors = sorted(validator.iter_errors(run_input), key=lambda e: list(e.absolute_path))
    if errors:
        details = [
            {
                "field": ".".join([field, *(str(p) for p in e.absolute_path)]),
                "message": e.message[:300],
            }
            for e in errors[:20]
        ]
        raise Unprocessable(
            f"The input does not fit the workflow's input schema: {details[0]['message']}",
            code="invalid_input",
            errors=details,
        )


def start_latest(
    workflow_id: str,
    run_input: dict,
    *,
    created_by: str | None,
    trace_id: str | None = None,
    rerun_of: str | None = None,
    field: str = "body.input",
) -> WorkflowRun:
    """A run of the workflow's current version, its input checked (404, 422); by the API,
    a trigger or schedule's ``start_workflow`` action, or an agent's ``start_workflow`` tool."""
    workflow = require(workflows.get(workflow_id), "workflow", workflow_id)
    check_input(workflow.definition, run_input, field)
    with write_transaction():
        workflow = require(workflows.get(workflow_id), "workflow", workflow_id)
        run = start(
            workflow.id,
            workflow.version,
            workflow.sha256,
            run_input,
            created_by=created_by,
            trace_id=trace_id,
            rerun_of=rerun_of,
        )
        audit.created("workflow-runs", run.id, requested_at="workflows")
    return run


def start(
    workflow_id: str,
    version: int,
    sha256: str,
    run_input: dict,
    *,
    created_by: str | None,
    trace_id: str | None = None,
    rerun_of: str | None = None,
) -> WorkflowRun:
    """A new run at its first step (inside the caller's write transaction)."""
    now = utcnow()
    run = WorkflowRun.create(
        id=new_id("wfr"),
        workflow_id=workflow_id,
        version=version,
        sha256=sha256,
        status="running",
        input=run_input,
        rerun_of=rerun_of,
        trace_id=trace_id or events.new_trace_id(),
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    run_event("started", run, created_by=created_by, rerun_of=rerun_of)
    _, graph = definition(run)
    enter(run, graph, graph.first, None)
    return run


def enter(run: WorkflowRun, graph: Graph, step_id: str, branch: str | None) -> RunStep:
    """Start ``step_id``: its row (reset when it exists: a retried or re-asked step) and,
    but for a parallel step, the task that executes it; a parallel step enters its
    branches."""
    now = utcnow()
    step = graph.step(step_id) if step_id != OUTPUT_STEP else {"kind": "output"}
    row = workflows.run_step(run.id, step_id)
    fresh = dict(
        status="pending",
        branch=branch,
        input=None,
        output=None,
        error=None,
        followed=False,
        approval_id=None,
        started_at=None,
        completed_at=None,
    )
    if row is None:
        row = RunStep.create(
            run_id=run.id, step_id=step_id, kind=step["kind"], created_at=now, **fresh
        )
    else:
        for key, value in fresh.items():
            setattr(row, key, value)
    if step["kind"] == "parallel":
        row.status, row.started_at, row.output = "running", now, {"ended": {}}
        row.save()
        step_event("started", run, row)
        for j, first in enumerate(step["branches"]):
            enter(run, graph, first, f"{step_id}/{j}")
        return row
    _queue(run, row, step, now)
    return row


def _queue(run: WorkflowRun, row: RunStep, step: dict, now: dt.datetime) -> None:
    run_at, context = now, {}  # an agent reads a task's context: its prompt says it all
    if step["kind"] == "wait" and step.get("seconds") is not None:
        run_at = now + dt.timedelta(seconds=step["seconds"])
        context["until"] = iso(run_at)
    what = f"step {row.step_id!r} ({row.kind})" if row.step_id != OUTPUT_STEP else "output"
    description = f"Workflow {run.workflow_id!r} run {run.id}: {what}."
    fields = dict(
        description=description,
        agent_id=step.get("agent_id") if step["kind"] == "agent" else None,
        kind=step["kind"],
        priority=1,
        context=context,
        status="pending",
        attempts=0,
        max_attempts=step.get("max_attempts") or 3,
        timeout_seconds=step.get("timeout_seconds") or 300,
        run_at=run_at,
        lease_owner=None,
        lease_expires_at=None,
        cancel_requested=False,
        approval_id=None,
        loop_state=None,
        result=None,
        error=None,
        updated_at=now,
        started_at=None,
        completed_at=None,
    )
    task = Task.get_or_none(Task.id == row.task_id) if row.task_id else None
    if task is None:
        task = Task.create(
            id=new_id("tsk"),
            workflow_run_id=run.id,
            workflow_step=row.step_id,
            trace_id=run.trace_id,
            created_by=f"workflow:{run.id}",
            created_at=now,
            **fields,
        )
        task_events.emit("created", task, description=description, created_by=task.created_by)
    else:  # the same task again (a retried run, a re-asked approval): fresh attempts
        Task.update(**fields).where(Task.id == task.id).execute()
        task = Task.get_by_id(task.id)
        DeadLetter.update(status="retried", resolved_at=now).where(
            (DeadLetter.subject_id == task.id) & (DeadLetter.status == "open")
        ).execute()
        task_events.emit("retried", task)
    row.task_id = task.id
    row.status = "waiting" if run_at > now else "pending"
    row.save()
    step_event("queued", run, row, run_at=iso(run_at))
    after_commit(signals.tasks_ready.send)


# --- the queue moves the run on --------------------------------------------------------------


def on_task(kind: str, task: Task, extra: dict) -> None:
    """A step's task changed (``task.<kind>``, inside the transaction that changed it)."""
    run = workflows.lock_run(task.workflow_run_id)
    if run is None:
        return
    row = workflows.run_step(run.id, task.workflow_step)
    if row is None or row.task_id != task.id:
        return
    now = utcnow()
    if kind == "started":
        if row.status in FINISHED_STEPS:
            return
        row.status, row.attempts = "running", row.attempts + 1
        row.started_at = row.started_at or now
        row.save()
        step_event("started", run, row)
    elif kind in ("retrying", "waiting", "resumed"):
        if row.status in FINISHED_STEPS:
            return
        row.status = "waiting" if kind == "waiting" else "pending"
        if kind == "retrying":
            row.error = extra.get("error")
        row.save()
        step_event(kind, run, row)
    elif kind == "waiting_approval":
        row.status, row.approval_id = "waiting_approval", extra.get("approval_id")
        row.save()
        step_event("waiting_approval", run, row, approval_id=row.approval_id)
    elif kind == "completed":
        _completed(run, row, Task.get_by_id(task.id))
    elif kind == "failed":
        _failed(run, row, extra.get("error") or {})
    elif kind == "cancelled":
        _cancelled(run, row)
    elif kind == "retried":  # the task was retried on its own (the task API, a dead letter)
        row.status, row.error, row.completed_at = "pending", None, None
        row.save()
        if run.status in ("failed", "cancelled"):
            _reopen(run)


def output_of(row: RunStep, task: Task):
    """A step's output as its task recorded it: an agent's reply as text, else JSON."""
    if row.kind == "agent" or task.result is None:
        return task.result
    return json.loads(task.result)


def _completed(run: WorkflowRun, row: RunStep, task: Task) -> None:
    if row.status in FINISHED_STEPS:
        return
    row.status, row.output, row.error = "completed", output_of(row, task), None
    row.completed_at = utcnow()
    row.save()
    step_event("completed", run, row)
    if run.status != "running":
        return
    if row.step_id == OUTPUT_STEP:
        _finish(run, "completed", output=row.output)
        return
    if run.cancel_requested:
        _cancel_if_idle(run)
        return
    if not _branch_open(run, row):
        return  # its branch lost an ``any`` join while it ran
    follow(run, row)


def _branch_open(run: WorkflowRun, row: RunStep) -> bool:
    """Whether every parallel step ``row`` is inside is still waiting for its branches."""
    branch = row.branch
    while branch is not None:
        owner = workflows.run_step(run.id, branch.rsplit("/", 1)[0])
        if owner is None or owner.status != "running":
            return False
        branch = owner.branch
    return True


def follow(run: WorkflowRun, row: RunStep) -> None:
    """Go on after ``row`` completed: its successor, or the end of its path."""
    _, graph = definition(run)
    row.followed = True
    row.save()
    if row.kind == "condition":
        target = (row.output or {}).get("next")
    else:
        target = graph.successor(row.step_id)
    if target is not None:
        enter(run, graph, target, row.branch)
    else:
        _path_ended(run, graph, row)


def _path_ended(run: WorkflowRun, graph: Graph, row: RunStep) -> None:
    if row.branch is None:
        spec, _ = definition(run)
        if spec.get("output") is not None:
            enter(run, graph, OUTPUT_STEP, None)
        else:
            _finish(run, "completed", output=row.output)
        return
    parallel_id, index = row.branch.rsplit("/", 1)
    parallel = workflows.run_step(run.id, parallel_id)
    if parallel is None or parallel.status != "running":
        return  # joined already (``any``), or stopped
    step = graph.step(parallel_id)
    ended = dict((parallel.output or {}).get("ended") or {})
    ended[index] = row.output
    if step.get("join", "all") == "any":
        parallel.output = {"branch": int(index), "output": row.output}
    elif len(ended) == len(step["branches"]):
        parallel.output = [ended[str(j)] for j in range(len(step["branches"]))]
    else:
        parallel.output = {"ended": ended}
        parallel.save()
        return
    parallel.status, parallel.completed_at = "completed", utcnow()
    parallel.save()
    step_event("completed", run, parallel)
    _stop(run, _within(run, parallel_id), "the branch lost the race to the join")
    follow(run, parallel)


def _within(run: WorkflowRun, parallel_id: str) -> list[RunStep]:
    """The live steps inside ``parallel_id``'s branches (nested parallels too)."""
    rows = {row.step_id: row for row in workflows.run_steps(run.id)}
    inside = []
    for row in rows.values():
        if row.status not in LIVE_STEPS:
            continue
        branch = row.branch
        while branch is not None:
            owner = branch.rsplit("/", 1)[0]
            if owner == parallel_id:
                inside.append(row)
                break
            branch = rows[owner].branch if owner in rows else None
    return inside


def _live(run: WorkflowRun) -> list[RunStep]:
    return [row for row in workflows.run_steps(run.id) if row.status in LIVE_STEPS]


def _stop(run: WorkflowRun, rows: list[RunStep], why: str) -> None:
    """Cancel these live steps: a queued or waiting one at once; a running one at its next
    step boundary (its task is asked to stop; its outcome, when it comes, is recorded and
    the run does not go on from it)."""
    now = utcnow()
    for row in rows:
        task = Task.get_or_none(Task.id == row.task_id) if row.task_id else None
        if task is not None and task.status == "running":
            Task.update(cancel_requested=True, updated_at=now).where(Task.id == task.id).execute()
            continue
        row.status, row.completed_at = "cancelled", now
        row.error = {"code": "step_cancelled", "detail": why}
        row.save()
        step_event("cancelled", run, row)
        if task is not None and task.status in ("pending", "waiting_approval"):
            _expire_approval(task, now)
            Task.update(
                status="cancelled", completed_at=now, updated_at=now, approval_id=None
            ).where(Task.id == task.id).execute()
            task.status = "cancelled"
            task_events.emit("cancelled", task)


def _expire_approval(task: Task, now: dt.datetime) -> None:
    if task.approval_id:
        Approval.update(
            status="expired", decided_at=now, comment="the workflow step stopped"
        ).where((Approval.id == task.approval_id) & (Approval.status == "pending")).execute()


def _failed(run: WorkflowRun, row: RunStep, error: dict) -> None:
    if row.status in FINISHED_STEPS:
        return
    row.status, row.error, row.completed_at = "failed", error, utcnow()
    row.save()
    step_event("failed", run, row, error=error)
    if run.status != "running" or not _branch_open(run, row):
        return
    if error.get("code") == "approval_void" and _ask_again(run, row):
        return
    _finish(
        run,
        "failed",
        error={
            "code": "step_failed",
            "detail": f"Step {row.step_id!r} failed: {error.get('detail') or error.get('code')}",
            "step_id": row.step_id,
            "cause": error,
        },
    )
    _stop(run, _live(run), "another step of the run failed")


MAX_REASKS = 3


def _ask_again(run: WorkflowRun, row: RunStep) -> bool:
    """What a guarded step was about to run is not what was approved: ask the approval
    step again (up to ``MAX_REASKS`` times), with the new content."""
    _, graph = definition(run)
    guard = graph.guard_of(row.step_id)
    approval = workflows.run_step(run.id, guard) if guard else None
    if approval is None:
        return False
    asked = (approval.output or {}).get("asked") or 1
    if asked >= MAX_REASKS:
        return False
    enter(run, graph, guard, approval.branch)
    approval = workflows.run_step(run.id, guard)
    approval.output = {"asked": asked + 1}
    approval.save()
    return True


def _cancelled(run: WorkflowRun, row: RunStep) -> None:
    if row.status in FINISHED_STEPS:
        return
    row.status, row.completed_at = "cancelled", utcnow()
    row.save()
    step_event("cancelled", run, row)
    if run.status != "running" or not _branch_open(run, row):
        return
    if not run.cancel_requested:  # a person cancelled the step's task: the run stops too
        run.cancel_requested = True
        run.save()
        _stop(run, _live(run), "the run was cancelled")
    _cancel_if_idle(run)


def request_cancel(run: WorkflowRun) -> None:
    """Stop the run: waiting and queued steps at once, running ones at their next step
    boundary; the run is ``cancelled`` once none is left (inside the caller's transaction,
    the run locked)."""
    run.cancel_requested = True
    run.updated_at = utcnow()
    run.save()
    run_event("cancelling", run)
    _stop(run, _live(run), "the run was cancelled")
    _cancel_if_idle(run)


def _cancel_if_idle(run: WorkflowRun) -> None:
    live = _live(run)
    if all(row.kind == "parallel" for row in live):  # no step left that a task executes
        for row in live:
            row.status, row.completed_at = "cancelled", utcnow()
            row.save()
        _finish(run, "cancelled")


def _finish(run: WorkflowRun, status: str, *, output=None, error: dict | None = None) -> None:
    now = utcnow()
    run.status, run.output, run.error = status, output, error
    run.completed_at = run.updated_at = now
    run.save()
    run_event(status, run, error=error)


def _reopen(run: WorkflowRun) -> None:
    run.status, run.error, run.output = "running", None, None
    run.cancel_requested, run.completed_at, run.updated_at = False, None, utcnow()
    run.save()
    run_event("retried", run)


def retry(run: WorkflowRun) -> list[str]:
    """Resume a failed or cancelled run at the steps that did not finish (inside the
    caller's transaction, the run locked): completed steps keep their outputs and never run
    again. Returns the step ids queued again."""
    _, graph = definition(run)
    _reopen(run)
    again = []
    rows = workflows.run_steps(run.id)
    parallels = {row.step_id for row in rows if row.kind == "parallel"}
    for row in rows:
        if row.status in ("failed", "cancelled") and row.kind != "parallel":
            owner = row.branch.rsplit("/", 1)[0] if row.branch else None
            if owner in parallels and _joined(rows, owner):
                continue  # a branch that lost an ``any`` join: nothing waits for it
            enter(run, graph, row.step_id, row.branch)
            again.append(row.step_id)
    for row in rows:
        if row.kind == "parallel" and row.status == "cancelled":
            row.status, row.completed_at, row.error = "running", None, None
            row.save()
    for row in workflows.run_steps(run.id):
        unfollowed = row.status == "completed" and not row.followed
        if unfollowed and row.step_id != OUTPUT_STEP and _branch_open(run, row):
            follow(run, row)  # it completed after the run had stopped: go on from it now
    return again


def _joined(rows: list[RunStep], parallel_id: str) -> bool:
    return any(row.step_id == parallel_id and row.status == "completed" for row in rows)
