"""Executing one workflow step's task: what a worker does with a task whose ``kind`` is a
step kind (``tool``, ``condition``, ``approval``, ``wait``, ``output``), and the prompt of an
agent step before the agent loop runs it.

Templates (Jinja, ``hub.core.programs``) and conditions (jq) are user programs: they are
evaluated here, in the worker, outside any transaction, bounded in time, size and memory. A
template fails its step, not the hub, and not retryably (it would fail the same way). They
see ``input`` (the run's input), ``steps.<id>.output`` (and ``.status``) of the steps that
completed, and ``run`` (``id``, ``workflow_id``, ``version``, ``trace_id``, ``created_at``).

Each function returns a :class:`StepOutcome`; the worker records it with the task's fenced
writes (``hub.services.tasks``), whose ``task.<kind>`` event moves the run on
(``hub.services.workflow_runs``). ``write`` runs inside that recording transaction: what
the step ran on (``run_step.input``) and, for a tool step, the tool execution, so a step's
side effect is recorded once per attempt, with the attempt's outcome.

An approval binds its step to the content it shows: the guarded step's rendered prompt or
tool arguments, by SHA-256. When the guarded step renders something else (the outputs it
reads changed since), the approval is void: the step fails ``approval_void`` and the run
asks the approval step again, with the new content.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from db import approvals as db_approvals
from db import workflows
from db.base import iso, utcnow
from db.tasks import Task
from db.workflows import OUTPUT_STEP, RunStep, WorkflowRun
from hub.core import programs, timeparse
from hub.core.flowgraph import Graph
from hub.core.problems import Problem
from hub.services import tools, workflow_runs
from hub.services.toolkit import Call

TEXT_LIMIT = 100_000  # characters one rendered template may produce


@dataclass
class StepOutcome:
    kind: str  # complete | fail | pause | snooze | proceed (an agent step: run the loop)
    output: Any = None
    code: str = ""
    detail: str = ""
    retryable: bool = False
    until: dt.datetime | None = None
    ask: dict | None = None
    approval: Any = None  # (for approvals.pause_task: the approval exists already)
    prompt: str | None = None
    write: Callable[[], None] = field(default=lambda: None)


class StepFailed(Exception):
    def __init__(self, code: str, detail: str, retryable: bool = False) -> None:
        super().__init__(detail)
        self.code, self.detail, self.retryable = code, detail, retryable


def _fail(exc: StepFailed, write=None) -> StepOutcome:
    return StepOutcome(
        "fail", code=exc.code, detail=exc.detail, retryable=exc.retryable, write=write or _none
    )


def _none() -> None:
    return None


# --- reading the run -----------------------------------------------------------------------


@dataclass
class View:
    run: WorkflowRun
    definition: dict
    graph: Graph
    rows: dict[str, RunStep]
    row: RunStep
    step: dict

    @property
    def context(self) -> dict:
        run = self.run
        return {
            "input": run.input,
            "steps": {
                step_id: {"output": row.output, "status": row.status}
                for step_id, row in self.rows.items()
                if row.status == "completed" and step_id != OUTPUT_STEP
            },
            "run": {
                "id": run.id,
                "workflow_id": run.workflow_id,
                "version": run.version,
                "trace_id": run.trace_id,
                "created_at": iso(run.created_at),
            },
        }


def _view(task: Task) -> View:
    run = workflows.get_run(task.workflow_run_id)
    if run is None:
        raise StepFailed("run_gone", f"Workflow run {task.workflow_run_id!r} is gone.")
    try:
        definition, graph = workflow_runs.definition(run)
    except LookupError as exc:
        raise StepFailed("workflow_gone", str(exc)) from None
    rows = {row.step_id: row for row in workflows.run_steps(run.id)}
    row = rows.get(task.workflow_step)
    if row is None:
        raise StepFailed("step_gone", f"The run has no step {task.workflow_step!r}.")
    step = {"kind": "output"} if row.step_id == OUTPUT_STEP else graph.step(row.step_id)
    return View(run, definition, graph, rows, row, step)


def render(value: Any, context: dict, where: str) -> Any:
    """``value`` with every string in it rendered as a template (``where`` names it)."""
    try:
        return programs.render_strings(value, context, TEXT_LIMIT, where)
    except programs.ProgramError as exc:
        raise StepFailed("template_failed", str(exc), exc.reason == "busy") from None


def content_of(view: View, step_id: str) -> dict:
    """What an agent or tool step runs on, rendered: what an approval of it shows."""
    step = view.graph.step(step_id)
    context = view.context
    if step["kind"] == "agent":
        prompt = render(step["prompt"], context, f"steps.{step_id}.prompt")
        return {"agent_id": step["agent_id"], "prompt": prompt}
    arguments = render(step.get("arguments") or {}, context, f"steps.{step_id}.arguments")
    return {"tool": step["tool"], "arguments": arguments}


def digest(content: dict) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_approved(view: View, content: dict) -> None:
    """StepFailed ``approval_void`` when an approval guards this step and approved other
    content than ``content``."""
    guard = view.graph.guard_of(view.row.step_id)
    if guard is None:
        return
    approval = view.rows.get(guard)
    approved = (approval.output or {}) if approval and approval.status == "completed" else {}
    if approved.get("sha256") != digest(content):
        raise StepFailed(
            "approval_void",
            f"What step {view.row.step_id!r} would run is not what approval step "
            f"{guard!r} approved (the outputs it reads changed since): asked again.",
        )


def _store_input(row_id: int, value: Any) -> Callable[[], None]:
    def write() -> None:
        RunStep.update(input=value).where(RunStep.id == row_id).execute()

    return write


# --- the step kinds ------------------------------------------------------------------------


async def execute(task: Task) -> StepOutcome:
    """Execute the step ``task`` stands for (not an agent step: see ``prepare_agent``)."""
    try:
        view = await asyncio.to_thread(_view, task)
        kind = view.row.kind
        if kind == "tool":
            return await _tool(task, view)
        if kind == "condition":
            return await asyncio.to_thread(_condition, view)
        if kind == "approval":
            return await asyncio.to_thread(_approval, task, view)
        if kind == "wait":
            return await asyncio.to_thread(_wait, task, view)
        if kind == "output":
            output = await asyncio.to_thread(
                render, view.definition["output"], view.context, "output"
            )
            return StepOutcome("complete", output=output)
        raise StepFailed("unknown_step_kind", f"No worker executes {kind!r} steps.")
    except StepFailed as exc:
        return _fail(exc)


async def prepare_agent(task: Task) -> StepOutcome:
    """An agent step's first attempt: its prompt rendered (and checked against an approval
    that guards it). ``proceed`` with the prompt, or ``fail``."""
    try:
        view = await asyncio.to_thread(_view, task)
        if view.row.input is not None:  # rendered by an earlier attempt
            return StepOutcome("proceed", prompt=view.row.input["prompt"])
        content = await asyncio.to_thread(content_of, view, view.row.step_id)
        _check_approved(view, content)
    except StepFailed as exc:
        return _fail(exc)
    return StepOutcome(
        "proceed",
        prompt=content["prompt"],
        write=_store_input(view.row.id, {"prompt": content["prompt"]}),
    )


async def _tool(task: Task, view: View) -> StepOutcome:
    content = await asyncio.to_thread(content_of, view, view.row.step_id)
    _check_approved(view, content)
    tool = await asyncio.to_thread(tools.resolve, content["tool"])
    if tool is None:
        raise StepFailed("tool_not_found", f"No tool named {content['tool']!r} is registered.")
    if tool.requires_approval and view.graph.guard_of(view.row.step_id) is None:
        raise StepFailed(
            "approval_required",
            f"Tool {tool.name!r} needs a person's approval: guard step {view.row.step_id!r} "
            "with an approval step.",
        )
    call = Call(caller=f"workflow:{view.run.id}", task_id=task.id, trace_id=task.trace_id)
    arguments = content["arguments"]
    status, result, error, duration = await tools.execute(tool, arguments, call)
    store = _store_input(view.row.id, {"tool": tool.name, "arguments": arguments})

    def write() -> None:
        store()
        tools.record(tool.name, arguments, status, result, error, duration, call)

    if status != "ok":
        return StepOutcome(
            "fail", code="tool_failed", detail=error or status, retryable=True, write=write
        )
    return StepOutcome("complete", output=result, write=write)


def _condition(view: View) -> StepOutcome:
    predicate = view.step["predicate"]
    try:
        result = programs.jq_matches(predicate, view.context)
    except programs.ProgramError as exc:
        raise StepFailed(
            "condition_failed", f"steps.{view.row.step_id}.predicate: {exc}", exc.reason == "busy"
        ) from None
    target = view.graph.branch_target(view.row.step_id, result)
    return StepOutcome("complete", output={"result": result, "next": target})


def _approval(task: Task, view: View) -> StepOutcome:
    row, step = view.row, view.step
    if row.approval_id:
        approval = db_approvals.get(row.approval_id)
        if approval is not None and approval.status == "approved":
            return StepOutcome(
                "complete",
                output={
                    "approved": True,
                    "approval_id": approval.id,
                    "decided_by": approval.decided_by,
                    "decided_at": iso(approval.decided_at),
                    "comment": approval.comment,
                    "sha256": (row.input or {}).get("sha256"),
                    "asked": (row.output or {}).get("asked", 1),
                },
            )
        if approval is not None and approval.status == "pending":
            return StepOutcome("pause", approval=approval)
        status = approval.status if approval is not None else "expired"
        who = f" by {approval.decided_by}" if approval is not None and approval.decided_by else ""
        why = f": {approval.comment}" if approval is not None and approval.comment else ""
        raise StepFailed(f"approval_{status}", f"Approval {row.approval_id} {status}{who}{why}.")
    guarded = view.graph.guarded(row.step_id)
    content = content_of(view, guarded)
    target = view.graph.step(guarded)
    message = None
    if step.get("message"):
        message = render(step["message"], view.context, f"steps.{row.step_id}.message")
    sha = digest(content)
    asked = (row.output or {}).get("asked", 1)
    arguments = content.get("arguments") if target["kind"] == "tool" else content
    ask = {
        "tool": target["tool"] if target["kind"] == "tool" else "agent",
        "arguments": arguments,
        "tool_call_id": f"{view.run.id}/{row.step_id}/{asked}",
        "agent_id": target.get("agent_id"),
        "owner_id": task.id,
        "workflow_run_id": view.run.id,
        "workflow_step": row.step_id,
        "title": f"Workflow {view.run.workflow_id} asks to approve step {guarded}",
        "message": message,
        "ttl_seconds": step.get("expires_in_seconds"),
    }
    asked_input = {"guards": guarded, "content": content, "sha256": sha, "message": message}
    return StepOutcome("pause", ask=ask, write=_store_input(row.id, asked_input))


def _wait(task: Task, view: View) -> StepOutcome:
    until_text = (task.context or {}).get("until")
    if until_text is None:
        rendered = render(view.step.get("until"), view.context, f"steps.{view.row.step_id}.until")
        try:
            until = timeparse.parse_timestamp(rendered.strip(), "until", "steps")
        except Problem:
            raise StepFailed(
                "invalid_time",
                f"steps.{view.row.step_id}.until rendered {rendered[:100]!r}, "
                "which is not an RFC 3339 time.",
            ) from None
    else:
        until = timeparse.parse_timestamp(until_text, "until", "context")
    if until > utcnow():
        return StepOutcome(
            "snooze", until=until, write=_store_input(view.row.id, {"until": iso(until)})
        )
    return StepOutcome("complete", output={"waited_until": iso(until)})
