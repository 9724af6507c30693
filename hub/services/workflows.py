"""Workflow definitions (versioned) and the operations on their runs: start, cancel, retry,
rerun; the seeded workflows.

A definition is checked whole before it is stored (every problem reported, each naming its
path: ``body.steps[2].agent_id``): its shape (``hub.core.flowgraph``: unknown step ids,
cycles, unreachable steps, branches that do not stay apart, approvals a path can go around),
each step's members for its kind, templates and jq predicates that do not compile, agents and
tools that do not exist, a tool needing approval that no approval step guards, and the input
JSON Schema itself. Every change makes a new immutable version (its SHA-256 over the
canonical JSON); a PUT of the same content makes none. Runs are pinned to the version they
started on (``hub.services.workflow_runs``).
"""

from __future__ import annotations

import hashlib
import json

import jsonschema
import peewee

from db import agents, workflows
from db.base import utcnow, write_transaction
from db.workflows import Workflow, WorkflowRun, WorkflowVersion
from hub.core import programs
from hub.core.flowgraph import KINDS, Graph
from hub.core.problems import Conflict, Unprocessable, require
from hub.events import log as events
from hub.services import agents as agents_service
from hub.services import audit, tools, workflow_runs
from hub.services.etags import check_if_match

COMMON = {"id", "kind", "name", "description", "next", "max_attempts", "timeout_seconds"}
MEMBERS = {
    "agent": ({"agent_id", "prompt"}, {"agent_id", "prompt"}),
    "tool": ({"tool", "arguments"}, {"tool"}),
    "approval": ({"guards", "message", "expires_in_seconds"}, set()),
    "condition": ({"predicate", "then", "else"}, {"predicate"}),
    "parallel": ({"branches", "join"}, {"branches"}),
    "wait": ({"seconds", "until"}, set()),
}


# --- definitions ---------------------------------------------------------------------------


def definition_of(body: dict, workflow_id: str) -> dict:
    """The stored definition from a create or replace body (defaults filled in)."""
    return {
        "name": body.get("name") or workflow_id,
        "description": body.get("description") or "",
        "input_schema": body.get("input_schema") or {"type": "object"},
        "steps": body["steps"],
        "output": body.get("output"),
    }


def digest(definition: dict) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check(definition: dict) -> None:
    """Nothing when ``definition`` is sound; else a 422 listing every problem by path."""
    errors = []

    def problem(path: str, message: str) -> None:
        errors.append({"field": f"body.{path}", "message": message})

    steps = definition["steps"]
    for i, step in enumerate(steps):
        kind = step.get("kind")
        if kind not in KINDS:
            problem(f"steps[{i}].kind", f"one of {', '.join(KINDS)}")
            continue
        allowed, required = MEMBERS[kind]
        for key in sorted(set(step) - COMMON - allowed):
            problem(f"steps[{i}].{key}", f"not a member of a {kind} step")
        for key in sorted(required - set(step)):
            problem(f"steps[{i}].{key}", f"required for a {kind} step")
        if kind == "wait" and ("seconds" in step) == ("until" in step):
            problem(f"steps[{i}]", "a wait step has either seconds or until")
        if kind == "parallel" and len(step.get("branches") or []) < 2:
            problem(f"steps[{i}].branches", "a parallel step has at least two branches")
    if errors:
        raise _unprocessable(errors)
    graph = Graph(steps)
    for path, message in graph.problems():
        problem(path, message)
    if errors:
        raise _unprocessable(errors)
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        for path, source in _templates(step, where):
            _compile(source, path, problem)
        if step["kind"] == "condition":
            try:
                programs.check_jq(step["predicate"])
            except programs.ProgramError as exc:
                problem(f"{where}.predicate", f"the jq predicate does not compile: {exc}")
        if step["kind"] == "agent" and agents.get(step["agent_id"]) is None:
            problem(f"{where}.agent_id", f"no agent has the id {step['agent_id']!r}")
        if step["kind"] == "tool":
            tool = tools.resolve(step["tool"])
            if tool is None:
                problem(f"{where}.tool", f"no tool is named {step['tool']!r}")
            elif tool.requires_approval and graph.guard_of(step["id"]) is None:
                problem(
                    f"{where}.tool",
                    f"{tool.name!r} needs a person's approval: guard this step with an "
                    "approval step",
                )
    for path, source in programs.strings(definition.get("output"), "output"):
        _compile(source, path, problem)
    try:
        jsonschema.Draft202012Validator.check_schema(definition["input_schema"])
    except jsonschema.SchemaError as exc:
        problem("input_schema", f"not a JSON Schema: {exc.message[:300]}")
    if errors:
        raise _unprocessable(errors)


def _unprocessable(errors: list[dict]) -> Unprocessable:
    first = errors[0]
    return Unprocessable(
        f"The workflow is not valid: {first['field']}: {first['message']}",
        code="invalid_workflow",
        errors=errors[:50],
    )


def _templates(step: dict, where: str):
    for key in ("prompt", "message", "until"):
        if isinstance(step.get(key), str):
            yield f"{where}.{key}", step[key]
    yield from programs.strings(step.get("arguments"), f"{where}.arguments")


def _compile(source: str, path: str, problem) -> None:
    try:
        programs.check_template(source)
    except programs.ProgramError as exc:
        problem(path, f"the template does not compile: {exc}")


def get(workflow_id: str) -> Workflow:
    return require(workflows.get(workflow_id), "workflow", workflow_id)


def create(body: dict, *, actor: str | None) -> Workflow:
    definition = definition_of(body, body["id"])
    check(definition)  # templates compile in the program workers: outside the transaction
    now = utcnow()
    try:
        with write_transaction():
            workflow = Workflow.create(
                id=body["id"],
                version=1,
                definition=definition,
                sha256=digest(definition),
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            _new_version(workflow, actor)
            _event("created", workflow)
            audit.created("workflows", workflow.id)
    except peewee.IntegrityError:
        raise Conflict(
            f"A workflow with id {body['id']!r} exists.", code="workflow_exists"
        ) from None
    return workflow


def replace(workflow_id: str, body: dict, *, if_match: str | None, actor: str | None) -> Workflow:
    """A new version (runs already started stay on theirs); none when nothing changed."""
    get(workflow_id)
    definition = definition_of(body, workflow_id)
    check(definition)
    with write_transaction():
        workflow = get(workflow_id)
        check_if_match(if_match, workflow.etag)
        sha = digest(definition)
        if sha == workflow.sha256:
            return workflow
        workflow.definition, workflow.sha256 = definition, sha
        workflow.version += 1
        workflow.updated_at = utcnow()
        workflow.save()
        _new_version(workflow, actor)
        _event("updated", workflow)
    return workflow


def _new_version(workflow: Workflow, actor: str | None) -> None:
    WorkflowVersion.create(
        workflow_id=workflow.id,
        version=workflow.version,
        definition=workflow.definition,
        sha256=workflow.sha256,
        created_by=actor,
        created_at=workflow.updated_at,
    )


def delete(workflow_id: str) -> None:
    """Remove a workflow and its versions (its finished runs stay, as history); 409 while a
    run of it is unfinished."""
    with write_transaction():
        workflow = get(workflow_id)
        running = workflows.unfinished_runs(workflow_id)
        if running:
            raise Conflict(
                f"Workflow {workflow_id!r} has {running} unfinished run(s): cancel them first.",
                code="workflow_in_use",
            )
        WorkflowVersion.delete().where(WorkflowVersion.workflow_id == workflow_id).execute()
        workflow.delete_instance()
        _event("deleted", workflow)


def _event(kind: str, workflow: Workflow) -> None:
    events.emit(
        f"workflow.{kind}",
        subject=workflow.id,
        payload={
            "workflow_id": workflow.id,
            "version": workflow.version,
            "sha256": workflow.sha256,
        },
    )


# --- runs --------------------------------------------------------------------------------


def start(
    workflow_id: str,
    run_input: dict,
    *,
    created_by: str | None,
    trace_id: str | None = None,
    rerun_of: str | None = None,
) -> WorkflowRun:
    """A run of the workflow's current version (``hub.services.workflow_runs.start_latest``)."""
    return workflow_runs.start_latest(
        workflow_id, run_input, created_by=created_by, trace_id=trace_id, rerun_of=rerun_of
    )


def get_run(run_id: str) -> WorkflowRun:
    return require(workflows.get_run(run_id), "workflow_run", run_id)


def cancel(run_id: str) -> WorkflowRun:
    with write_transaction():
        get_run(run_id)
        run = workflows.lock_run(run_id)
        if run.status != "running":
            raise Conflict(f"Run {run_id!r} is already {run.status}.", code="run_finished")
        workflow_runs.request_cancel(run)
    return get_run(run_id)


def retry(run_id: str) -> WorkflowRun:
    with write_transaction():
        get_run(run_id)
        run = workflows.lock_run(run_id)
        if run.status not in ("failed", "cancelled"):
            raise Conflict(
                f"Only failed or cancelled runs can be retried; {run_id!r} is {run.status}.",
                code="run_not_retryable",
            )
        pinned = workflows.version(run.workflow_id, run.version)
        if pinned is None or pinned.sha256 != run.sha256:
            raise Conflict(
                f"Workflow {run.workflow_id!r} was deleted: its run cannot go on.",
                code="workflow_gone",
            )
        workflow_runs.retry(run)
    return get_run(run_id)


def rerun(run_id: str, *, created_by: str | None) -> WorkflowRun:
    """A new run of the same input on the workflow's latest version."""
    old = get_run(run_id)
    if workflows.get(old.workflow_id) is None:
        raise Conflict(f"Workflow {old.workflow_id!r} was deleted.", code="workflow_gone")
    return start(old.workflow_id, old.input, created_by=created_by, rerun_of=old.id)


# --- seeds -------------------------------------------------------------------------------

SEED_WORKFLOWS = (
    {
        "id": "triage-and-announce",
        "name": "Triage an issue, then announce it once a person agrees",
        "description": "The assistant triages; a person approves the announcement it will "
        "make (shown exactly as it will be sent); a notification announces it.",
        "input_schema": {
            "type": "object",
            "required": ["title"],
            "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
        },
        "steps": [
            {
                "id": "triage",
                "kind": "agent",
                "agent_id": "assistant",
                "prompt": "Triage this issue and say how urgent it is.\n\nTitle: {{ input.title }}"
                "{% if input.body is defined %}\n\n{{ input.body }}{% endif %}",
            },
            {
                "id": "review",
                "kind": "approval",
                "message": "Announce the triage of {{ input.title | tojson }}?",
            },
            {
                "id": "announce",
                "kind": "tool",
                "tool": "notify",
                "arguments": {
                    "title": "Triaged: {{ input.title[:150] }}",
                    "message": "{{ steps.triage.output[:3900] }}",
                },
            },
        ],
        "output": {"triage": "{{ steps.triage.output }}"},
    },
    {
        "id": "recall-and-brief",
        "name": "Brief a person from memory",
        "description": "Searches the memories for a topic, has the assistant write a brief "
        "from what it found, and sends it as a notification after waiting for the time given.",
        "input_schema": {
            "type": "object",
            "required": ["topic"],
            "properties": {
                "topic": {"type": "string", "minLength": 1},
                "deliver_at": {"type": "string", "format": "date-time"},
            },
        },
        "steps": [
            {
                "id": "recall",
                "kind": "tool",
                "tool": "memory_search",
                "arguments": {"query": "{{ input.topic }}"},
            },
            {
                "id": "brief",
                "kind": "agent",
                "agent_id": "assistant",
                "prompt": "Write a short brief on {{ input.topic | tojson }} from these "
                "memories: {{ steps.recall.output | tojson }}",
            },
            {
                "id": "when",
                "kind": "condition",
                "predicate": ".input.deliver_at != null",
                "else": "send",
            },
            {"id": "hold", "kind": "wait", "until": "{{ input.deliver_at }}"},
            {
                "id": "send",
                "kind": "tool",
                "tool": "notify",
                "arguments": {
                    "title": "Brief: {{ input.topic[:180] }}",
                    "message": "{{ steps.brief.output[:3900] }}",
                },
            },
        ],
        "output": {"brief": "{{ steps.brief.output }}"},
    },
)


def seed(*, actor: str | None) -> dict:
    """Create the default workflows that do not exist yet (and the default agents they use,
    when missing); never overwrite."""
    agents_service.seed(actor)
    created, skipped = [], []
    for default in SEED_WORKFLOWS:
        if workflows.get(default["id"]) is not None:
            skipped.append(default["id"])
            continue
        try:
            create(json.loads(json.dumps(default)), actor=actor)
        except Conflict:
            skipped.append(default["id"])
        else:
            created.append(default["id"])
    return {"created": created, "skipped": skipped}
