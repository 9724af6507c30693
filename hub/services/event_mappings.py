"""Event mappings: a source's webhook (event name, action, jq filter) → a canonical event type.

A delivery matches a mapping when the source is the integration's kind, the event name is
the delivery's (``X-GitHub-Event`` …), the mapping's ``action`` (when set) is the payload's
action (GitHub and generic: ``action``; GitLab: ``object_attributes.action``) and its jq
``filter`` (when set) is true for the payload. The first match in creation order wins.

Filters are user programs (``hub.core.programs``: bounded in time and memory, in a worker
process). One that fails on a payload or runs past its limits counts as no match; the failure
is recorded on the mapping (``error_count``, ``last_error``), logged, and told by an
``event_mapping.failed`` event.
"""

from __future__ import annotations

import logging

from db import projects
from db.base import (
    database,
    is_postgres,
    iso,
    new_id,
    utcnow,
    write_transaction,
)
from db.projects import EventMapping
from hub.core import jqfilter
from hub.core.problems import Conflict, NotFound
from hub.events import log as events
from hub.services import audit

log = logging.getLogger("aether.webhooks")

# The canonical table: issue.created, issue.updated, issue.closed, issue.commented, pr.opened,
# pr.updated, pr.closed (closed unmerged), pr.merged, pr.reviewed, deployment.completed (and
# code.pushed), each from GitHub and from GitLab.
ISSUE_CHANGES = '["edited", "labeled", "unlabeled", "assigned", "unassigned", "milestoned", '
ISSUE_CHANGES += '"demilestoned", "reopened"]'
PR_CHANGES = '["synchronize", "edited", "reopened", "ready_for_review", "converted_to_draft", '
PR_CHANGES += '"labeled", "unlabeled", "assigned", "unassigned", "review_requested"]'
GITHUB_DEFAULTS = (
    ("issues", "opened", None, "issue.created"),
    ("issues", None, f".action as $a | {ISSUE_CHANGES} | index([$a]) != null", "issue.updated"),
    ("issues", "closed", None, "issue.closed"),
    ("issue_comment", "created", None, "issue.commented"),
    ("pull_request", "opened", None, "pr.opened"),
    ("pull_request", None, f".action as $a | {PR_CHANGES} | index([$a]) != null", "pr.updated"),
    ("pull_request", "closed", ".pull_request.merged == true", "pr.merged"),
    ("pull_request", "closed", ".pull_request.merged != true", "pr.closed"),
    ("pull_request_review", "submitted", None, "pr.reviewed"),
    ("deployment_status", None, '.deployment_status.state == "success"', "deployment.completed"),
    ("push", None, None, "code.pushed"),
)
GITLAB_DEFAULTS = (
    ("Issue Hook", "open", None, "issue.created"),
    ("Issue Hook", "update", None, "issue.updated"),
    ("Issue Hook", "reopen", None, "issue.updated"),
    ("Issue Hook", "close", None, "issue.closed"),
    ("Note Hook", None, '.object_attributes.noteable_type == "Issue"', "issue.commented"),
    ("Merge Request Hook", "open", None, "pr.opened"),
    ("Merge Request Hook", "update", None, "pr.updated"),
    ("Merge Request Hook", "reopen", None, "pr.updated"),
    ("Merge Request Hook", "close", None, "pr.closed"),
    ("Merge Request Hook", "merge", None, "pr.merged"),
    ("Merge Request Hook", "approved", None, "pr.reviewed"),
    ("Deployment Hook", None, '.status == "success"', "deployment.completed"),
    ("Push Hook", None, None, "code.pushed"),
)
DEFAULTS = tuple(
    {"source": source, "event": event, "action": action, "filter": filter_, "type": type_}
    for source, table in (("github", GITHUB_DEFAULTS), ("gitlab", GITLAB_DEFAULTS))
    for event, action, filter_, type_ in table
)


def describe(mapping: dict) -> str:
    """``github issues opened → issue.created`` (with `` if <filter>`` when it has one)."""
    parts = [mapping["source"], mapping["event"]]
    if mapping.get("action"):
        parts.append(mapping["action"])
    text = " ".join(parts)
    if mapping.get("filter"):
        text += f" if {mapping['filter']}"
    return f"{text} → {mapping['type']}"


def _lock() -> None:
    """Serialise mapping writes (no unique index can cover a nullable filter text): SQLite's
    write transaction already does; PostgreSQL takes a self-exclusive table lock that still
    lets deliveries read the mappings."""
    if is_postgres():
        database.execute_sql("LOCK TABLE event_mapping IN SHARE ROW EXCLUSIVE MODE")


def _fields(body: dict) -> dict:
    return {name: body.get(name) for name in ("source", "event", "action", "filter", "type")}


def _insert(fields: dict) -> EventMapping:
    return EventMapping.create(id=new_id("map"), created_at=utcnow(), **fields)


def create(body: dict) -> EventMapping:
    fields = _fields(body)
    if fields["filter"] is not None:
        jqfilter.compile_filter(fields["filter"], "body.filter")
    with write_transaction():
        _lock()
        if projects.same_mapping(fields) is not None:
            raise Conflict(f"The mapping {describe(fields)!r} exists.", code="mapping_exists")
        mapping = _insert(fields)
        audit.created("event-mappings", mapping.id)
        return mapping


def delete(mapping_id: str) -> None:
    with write_transaction():
        if EventMapping.delete().where(EventMapping.id == mapping_id).execute() == 0:
            raise NotFound(f"No event mapping with id {mapping_id!r}.", code="mapping_not_found")


def seed() -> dict:
    """Install the default GitHub and GitLab mappings that do not exist yet."""
    created, skipped = [], []
    with write_transaction():
        _lock()
        for default in DEFAULTS:
            if projects.same_mapping(default) is None:
                _insert(dict(default))
                created.append(describe(default))
            else:
                skipped.append(describe(default))
    return {"created": created, "skipped": skipped}


# --- matching ----------------------------------------------------------------------------


def action_of(kind: str, payload) -> str | None:
    """The delivery's action: ``object_attributes.action`` on GitLab, ``action`` otherwise."""
    if not isinstance(payload, dict):
        return None
    if kind == "gitlab":
        attributes = payload.get("object_attributes")
        value = attributes.get("action") if isinstance(attributes, dict) else None
    else:
        value = payload.get("action")
    return value if isinstance(value, str) else None


def match(
    kind: str, event: str | None, payload, delivery_id: str | None = None
) -> EventMapping | None:
    """The first mapping (by creation) that this delivery matches, or None. Runs the
    mappings' filters: call it outside any write transaction."""
    if not event:
        return None
    action = action_of(kind, payload)
    for mapping in projects.mappings_for(kind, event):
        if mapping.action is not None and mapping.action != action:
            continue
        try:
            if not jqfilter.matches(mapping.filter, payload):
                continue
        except jqfilter.FilterError as exc:
            _failed(mapping, delivery_id, str(exc))
            continue
        return mapping
    return None


def _failed(mapping: EventMapping, delivery_id: str | None, message: str) -> None:
    message = message if len(message) <= 1000 else message[:999] + "…"
    log.warning(
        "event mapping filter failed; treated as no match",
        extra={"mapping_id": mapping.id, "delivery_id": delivery_id, "error": message},
    )
    with audit.aside(), write_transaction():  # bookkeeping, not the request's change
        EventMapping.update(
            error_count=EventMapping.error_count + 1,
            last_error={"message": message, "at": iso(utcnow()), "delivery_id": delivery_id},
        ).where(EventMapping.id == mapping.id).execute()
        events.emit(
            "event_mapping.failed",
            subject=mapping.id,
            payload={"mapping_id": mapping.id, "delivery_id": delivery_id, "error": message},
        )
