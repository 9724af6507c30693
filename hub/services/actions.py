"""What a trigger or a schedule does: its action, checked when it is stored and run when it
fires. ``create_task`` makes a task for ``agent_id`` or for an agent with ``capability``, at
``priority``, whose description is ``description`` rendered as a template;
``start_workflow`` starts a run of ``workflow_id`` (its current version) whose input is
``input`` with every string in it rendered as a template (checked against the workflow's
input schema when it fires).

Templates are Jinja2 in a sandbox (see ``hub.core.programs``: no Python internals, no unsafe
calls, lists and dicts cannot be changed, a missing name is an error, autoescape off, bounded
repetition), rendered in a worker process within the user-program limits. A trigger renders
over ``{"event": …}`` (the event as the API shows it, without ``raw``), a schedule over
``{"schedule": {id, name, cron, timezone}, "now": …}``.

Rendering never happens inside a write transaction: ``prepare`` renders the task's body
first, ``create`` writes it (in the caller's transaction).
"""

from __future__ import annotations

from db import agents, workflows
from db.tasks import Task
from db.workflows import WorkflowRun
from hub.core import programs
from hub.core.problems import NotFound, Unprocessable
from hub.services import tasks, workflow_runs

MAX_DESCRIPTION = 20000  # a task description's limit (openapi.yaml, TaskCreate)
ERROR_LIMIT = 1000  # characters of an error message kept


class ActionFailed(Exception):
    """The action could not run (template, routing); ``str`` says why, for a person."""


def clip(message: str) -> str:
    return message if len(message) <= ERROR_LIMIT else message[: ERROR_LIMIT - 1] + "…"


def check(action: dict, field: str = "body.action") -> dict:
    """The action as it is stored (only the members given), or a 422 naming the member at
        fault: a template that does not parse, an ``agent_id`` that names no agent (or one that
        lacks ``capability``), neither ``agent_id`` nor ``capability``, a ``workflow_id`` that
        names no workflow, a member of the other kind, or one the kind needs missing (the schema
    cannot say which members go with which kind: a 422, like the other things it cannot say)."""
    kind = action.get("kind")
    mine, other = (WORKFLOW, TASK) if kind == "start_workflow" else (TASK, WORKFLOW)
    stray = sorted(set(action) & (other - mine))
    missing = sorted(REQUIRED[kind] - set(action))
    if stray or missing:
        name = stray[0] if stray else missing[0]
        why = f"not a member of a {kind} action" if stray else f"required for a {kind} action"
        raise Unprocessable(
            f"{field}.{name}: {why}.",
            code="invalid_action",
            errors=[{"field": f"{field}.{name}", "message": why}],
        )
    if kind == "start_workflow":
        return _check_workflow(action, field)
    try:
        programs.check_template(action["description"])
    except programs.ProgramError as exc:
        raise Unprocessable(
            f"The description template does not parse: {exc}.",
            code="invalid_template",
            errors=[{"field": f"{field}.description", "message": str(exc)}],
        ) from None
    agent_id, capability = action.get("agent_id"), action.get("capability")
    if agent_id:
        agent = agents.get(agent_id)
        if agent is None:
            raise Unprocessable(
                f"No agent with id {agent_id!r}.",
                code="agent_not_found",
                errors=[{"field": f"{field}.agent_id", "message": "no such agent"}],
            )
        if capability and capability not in agent.capabilities:
            raise Unprocessable(
                f"Agent {agent_id!r} does not declare the capability {capability!r}.",
                code="capability_mismatch",
                errors=[{"field": f"{field}.capability", "message": "not declared by the agent"}],
            )
    elif not capability:
        raise Unprocessable(
            "Say which agent should do the task: agent_id or capability.",
            code="no_route",
            errors=[
                {"field": f"{field}.agent_id", "message": "agent_id or capability is required"}
            ],
        )
    return {key: value for key, value in action.items() if value is not None}


TASK = {"agent_id", "capability", "description", "priority"}
WORKFLOW = {"workflow_id", "input"}
REQUIRED = {"create_task": {"description"}, "start_workflow": {"workflow_id"}}


def _check_workflow(action: dict, field: str) -> dict:
    if workflows.get(action["workflow_id"]) is None:
        raise Unprocessable(
            f"No workflow with id {action['workflow_id']!r}.",
            code="workflow_not_found",
            errors=[{"field": f"{field}.workflow_id", "message": "no such workflow"}],
        )
    for path, source in programs.strings(action.get("input") or {}, f"{field}.input"):
        try:
            programs.check_template(source)
        except programs.ProgramError as exc:
            raise Unprocessable(
                f"The input template does not parse: {exc}.",
                code="invalid_template",
                errors=[{"field": path, "message": str(exc)}],
            ) from None
    return {key: value for key, value in action.items() if value is not None}


def _render_input(value, context: dict):
    try:
        return programs.render_strings(value, context, MAX_DESCRIPTION, "input")
    except programs.ProgramError as exc:
        raise ActionFailed(clip(f"the input template failed: {exc}")) from None


def render(source: str, context: dict) -> str:
    """``source`` rendered over ``context``; ActionFailed when it fails, runs past its
    limits, or its output is empty or longer than a task description may be."""
    try:
        text = programs.render(source, context, MAX_DESCRIPTION)
    except programs.ProgramError as exc:
        if exc.reason == "too_large":
            raise ActionFailed(
                f"the description template rendered more than {MAX_DESCRIPTION} characters"
            ) from None
        raise ActionFailed(clip(f"the description template failed: {exc}")) from None
    if not text.strip():
        raise ActionFailed("the description template rendered an empty description")
    if "\x00" in text:
        raise ActionFailed("the description template rendered a NUL character")
    return text


def prepare(action: dict, context: dict) -> dict:
    """What ``action`` makes over ``context`` (its templates rendered, outside any
    transaction): a task's body, or a run's; or ActionFailed."""
    if action.get("kind") == "start_workflow":
        return {
            "kind": "start_workflow",
            "workflow_id": action["workflow_id"],
            "input": _render_input(action.get("input") or {}, context),
        }
    return {
        "description": render(action["description"], context),
        "agent_id": action.get("agent_id"),
        "capability": action.get("capability"),
        "priority": action.get("priority"),
    }


def create(body: dict, *, created_by: str, trace_id: str) -> Task | WorkflowRun:
    """Make the task or the run ``prepare`` described (inside the caller's write
    transaction), or ActionFailed (no agent fits, no such workflow, an input its schema
    refuses)."""
    if body.get("kind") != "start_workflow":
        try:
            return tasks.create(body, created_by=created_by, trace_id=trace_id)
        except Unprocessable as exc:
            raise ActionFailed(clip(exc.detail)) from None
    try:
        return workflow_runs.start_latest(
            body["workflow_id"], body["input"], created_by=created_by, trace_id=trace_id
        )
    except (Unprocessable, NotFound) as exc:
        fields = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors or [])
        raise ActionFailed(clip(f"{exc.detail} ({fields})" if fields else exc.detail)) from None
