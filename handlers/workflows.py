"""Workflows: versioned definitions and their runs."""

from __future__ import annotations

from db import workflows
from db.pagination import list_page
from db.workflows import Workflow, WorkflowRun, WorkflowVersion
from generated.models import WorkflowRunCreate
from handlers import body_fields
from hub.core import timeparse
from hub.http import context
from hub.http.validation import parse_yaml
from hub.services import workflows as service


def _body(body) -> dict:
    """The definition as sent, JSON or YAML (bytes): checked against the schema already, and
    kept as written (no defaults filled in, ``else`` not renamed)."""
    return parse_yaml(body) if isinstance(body, bytes) else body


def _run(run: WorkflowRun) -> dict:
    steps = workflows.run_steps(run.id)
    tokens = workflows.step_tokens([step.task_id for step in steps if step.kind == "agent"])
    return run.to_api(steps, tokens)


def list_workflows(limit=50, cursor=None):
    """List workflows."""
    return list_page(workflows.workflows(), Workflow.id, limit=limit, cursor=cursor), 200


def create_workflow(body):
    """Define a workflow."""
    workflow = service.create(_body(body), actor=context.actor_id())
    headers = {"Location": f"/api/v1/workflows/{workflow.id}", "ETag": workflow.etag}
    return workflow.to_api(), 201, headers


def seed_workflows():
    """Create the default workflows that do not exist yet."""
    return service.seed(actor=context.actor_id()), 200


def get_workflow(workflow_id):
    """One workflow at its current version."""
    workflow = service.get(workflow_id)
    return workflow.to_api(), 200, {"ETag": workflow.etag}


def update_workflow(workflow_id, body):
    """Replace a workflow's definition (a new version)."""
    workflow = service.replace(
        workflow_id,
        _body(body),
        if_match=context.header("If-Match"),
        actor=context.actor_id(),
    )
    return workflow.to_api(), 200, {"ETag": workflow.etag}


def delete_workflow(workflow_id):
    """Delete a workflow."""
    service.delete(workflow_id)
    return None, 204


def list_workflow_versions(workflow_id, limit=50, cursor=None):
    """Every version of a workflow."""
    service.get(workflow_id)
    query = workflows.versions(workflow_id)
    page = list_page(query, WorkflowVersion.id, limit=limit, cursor=cursor, descending=True)
    return page, 200


def start_workflow_run(workflow_id, body):
    """Start a run."""
    fields = body_fields(WorkflowRunCreate, body)
    run = service.start(workflow_id, fields.get("input") or {}, created_by=context.actor_id())
    return _run(run), 201, {"Location": f"/api/v1/workflow-runs/{run.id}"}


def list_workflow_runs(limit=50, cursor=None, status=None, workflow_id=None, since=None):
    """List workflow runs, newest first."""
    query = workflows.runs(
        status=status,
        workflow_id=workflow_id,
        since=timeparse.parse_timestamp(since, "since"),
    )
    return list_page(query, WorkflowRun.id, limit=limit, cursor=cursor, descending=True), 200


def get_workflow_run(run_id):
    """One run with its steps."""
    return _run(service.get_run(run_id)), 200


def cancel_workflow_run(run_id):
    """Cancel a run."""
    return _run(service.cancel(run_id)), 200


def retry_workflow_run(run_id):
    """Resume a failed or cancelled run where it stopped."""
    return _run(service.retry(run_id)), 200


def rerun_workflow_run(run_id):
    """Start a new run with the same input on the latest version."""
    run = service.rerun(run_id, created_by=context.actor_id())
    return _run(run), 201, {"Location": f"/api/v1/workflow-runs/{run.id}"}
