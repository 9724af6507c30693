"""Tools the agents call: the built-ins and the HTTP tools registered through the API.

A tool is a :class:`ToolDef`: a name, a description, a JSON Schema for its arguments, whether
a person must approve each call an agent makes, and an async ``run(arguments, call)``.
``run`` answers any JSON value, or raises :class:`ToolFailed` with a reason the model may
read; anything else it raises is a bug, reported to the model as an internal error.

Built-ins: ``current_time``, ``http_request`` (through :mod:`hub.core.outbound`, so private and
loopback addresses only with ``AETHER_OUTBOUND_ALLOWLIST``; it needs approval: an agent that
can reach any public URL can also send data there), ``create_task``, ``start_workflow`` and
``notify``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from db.base import iso, utcnow
from hub.core import outbound
from hub.core.problems import Problem
from hub.services import audit, memory, notifications, tasks, workflow_runs
from hub.settings import current_settings

ANY_OBJECT: dict = {"type": "object"}


class ToolFailed(Exception):
    """The tool could not do what was asked; ``str()`` is the reason the model reads."""


@dataclass(frozen=True)
class Call:
    """Who calls: an API key (``key:…``), a task or a chat turn, and for which agent."""

    caller: str
    agent_id: str | None = None
    task_id: str | None = None
    turn_id: str | None = None
    session_id: str | None = None
    trace_id: str | None = None  # of the task or turn calling: what it creates carries it


Runner = Callable[[dict, Call], Awaitable[Any]]


@dataclass(frozen=True)
class ToolDef:
    name: str
    kind: str  # builtin | http | mcp
    description: str
    parameters: dict
    run: Runner = field(repr=False)
    requires_approval: bool = False
    timeout_seconds: float = 10.0
    endpoint: str | None = None
    method: str | None = None
    header_names: tuple[str, ...] = ()
    created_at: str | None = None
    source: str = "builtin"  # builtin, api, or plugin:<id>

    def to_api(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "description": self.description,
            "parameters": self.parameters,
            "endpoint": self.endpoint,
            "method": self.method,
            "header_names": list(self.header_names),
            "timeout_seconds": self.timeout_seconds,
            "requires_approval": self.requires_approval,
            "created_at": self.created_at,
        }


def argument_errors(schema: dict, arguments: dict) -> list[dict[str, str]]:
    """Every way ``arguments`` breaks ``schema``, as ``{field, message}`` (field: a dotted
    path from ``arguments``)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = []
    for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.path)):
        path = ".".join(str(part) for part in error.path)
        errors.append(
            {"field": "arguments" + (f".{path}" if path else ""), "message": error.message}
        )
    return errors


def schema_errors(schema: dict) -> list[str]:
    """Why ``schema`` is not a usable JSON Schema for arguments (empty: it is)."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [exc.message]
    if schema.get("type", "object") != "object":
        return ["a tool's arguments are a JSON object: the schema's type must be 'object'"]
    return []


# --- built-ins ---------------------------------------------------------------------------


async def _current_time(arguments: dict, _call: Call) -> dict:
    name = arguments.get("timezone", "UTC")
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolFailed(f"unknown time zone {name!r}") from exc
    now = utcnow().replace(tzinfo=dt.UTC)
    return {
        "utc": now.isoformat().replace("+00:00", "Z"),
        "local": now.astimezone(zone).isoformat(),
        "timezone": name,
        "unix": round(now.timestamp(), 3),
    }


def _body_of(response: outbound.OutboundResponse) -> Any:
    kind = response.headers.get("content-type", "")
    if "json" in kind and not response.truncated:
        try:
            return response.json()
        except ValueError:
            pass
    return response.text()


def _outbound_options() -> dict:
    settings = current_settings()
    return {
        "allowlist": outbound.Allowlist.parse(settings.outbound_allowlist),
        "max_bytes": settings.outbound_max_response_bytes,
    }


async def _send(method: str, url: str, **kw: Any) -> outbound.OutboundResponse:
    try:
        return await outbound.request(method, url, **kw, **_outbound_options())
    except (outbound.OutboundRefused, outbound.OutboundFailed) as exc:
        raise ToolFailed(str(exc)) from None


async def _http_request(arguments: dict, _call: Call) -> dict:
    kw: dict[str, Any] = {"headers": arguments.get("headers") or None, "timeout": 15.0}
    if "json" in arguments:
        kw["json_body"] = arguments["json"]
    elif "body" in arguments:
        kw["content"] = arguments["body"].encode()
    response = await _send(arguments.get("method", "GET"), arguments["url"], **kw)
    keep = ("content-type", "content-length", "location", "date")
    return {
        "status": response.status,
        "headers": {k: v for k, v in response.headers.items() if k in keep},
        "body": _body_of(response),
        "truncated": response.truncated,
    }


async def _create_task(arguments: dict, call: Call) -> dict:
    task = await _in_thread(
        tasks.create,
        {k: v for k, v in arguments.items() if k in CREATE_TASK_FIELDS},
        created_by=f"task:{call.task_id}" if call.task_id else f"turn:{call.turn_id}",
        trace_id=call.trace_id,
    )
    return {"task_id": task.id, "status": task.status, "agent_id": task.agent_id}


async def _start_workflow(arguments: dict, call: Call) -> dict:
    try:
        run = await _in_thread(
            workflow_runs.start_latest,
            arguments["workflow_id"],
            arguments.get("input") or {},
            created_by=f"task:{call.task_id}" if call.task_id else f"turn:{call.turn_id}",
            trace_id=call.trace_id,
            field="arguments.input",
        )
    except Problem as problem:
        raise ToolFailed(problem.detail) from None
    return {"run_id": run.id, "workflow_id": run.workflow_id, "version": run.version}


async def _notify(arguments: dict, call: Call) -> dict:
    note = await _in_thread(
        notifications.create,
        kind="agent",
        severity=arguments.get("severity", "info"),
        title=arguments["title"],
        message=arguments.get("message", ""),
        subject=call.task_id or call.turn_id or call.agent_id,
    )
    return {"notification_id": note.id}


async def _memory_search(arguments: dict, call: Call) -> dict:
    body = {"query": arguments["query"], "limit": arguments.get("limit", 5)}
    scope = arguments.get("scope")
    if scope:
        body["scope"] = scope
        owner = {"agent": call.agent_id, "session": call.session_id}.get(scope)
        if owner:
            body["agent_id" if scope == "agent" else "session_id"] = owner
    try:
        found = await _in_thread(memory.search, body)
    except Problem as problem:
        raise ToolFailed(problem.detail) from None
    await _in_thread(_audit, call, "memory_search", "POST", "/api/v1/memories/search", 200)
    return {
        "results": [
            {"key": hit["key"], "content": hit["content"], "score": hit["score"]}
            for hit in found["items"]
        ]
    }


async def _memory_store(arguments: dict, call: Call) -> dict:
    scope = arguments.get("scope", "agent")
    body = {
        "key": arguments["key"],
        "content": arguments["content"],
        "scope": scope,
        "tags": arguments.get("tags", []),
    }
    if scope == "agent":
        body["agent_id"] = call.agent_id
    elif scope == "session":
        body["session_id"] = call.session_id
    if "ttl_seconds" in arguments:
        body["ttl_seconds"] = arguments["ttl_seconds"]
    try:
        stored = await _in_thread(memory.create, body)
    except Problem as problem:
        raise ToolFailed(problem.detail) from None
    await _in_thread(_audit, call, "memory_store", "POST", f"/api/v1/memories/{stored.key}", 201)
    return {"key": stored.key, "scope": stored.scope, "version": stored.version}


def _audit(call: Call, operation: str, method: str, resource: str, status: int) -> None:
    """An agent's memory write or search, in the audit log like a person's request."""
    audit.record(
        actor_key_id=None,
        actor_name=call.caller,
        operator=f"agent:{call.agent_id}" if call.agent_id else None,
        operation_id=operation,
        method=method,
        resource=resource,
        status=status,
        request_id=call.task_id or call.turn_id or call.caller,
    )


async def _in_thread(function, *args, **kw):
    return await asyncio.to_thread(function, *args, **kw)


# Names of the tools that read an agent's skills (hub.engine.disclosure makes them per run):
# never a registered tool's.
SKILL_TOOLS = ("load_skill", "read_skill_file")

CREATE_TASK_FIELDS = ("description", "agent_id", "capability", "priority", "context")
_SLUG = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}

BUILTINS: dict[str, ToolDef] = {
    tool.name: tool
    for tool in (
        ToolDef(
            name="current_time",
            kind="builtin",
            description="The current date and time, in UTC and in a time zone.",
            parameters={
                "type": "object",
                "properties": {
                    "timezone": {
                        "type": "string",
                        "description": "An IANA time zone such as Europe/Paris (default UTC).",
                    }
                },
                "additionalProperties": False,
            },
            run=_current_time,
        ),
        ToolDef(
            name="http_request",
            kind="builtin",
            description="Make an HTTP request to a public URL and read the answer.",
            parameters={
                "type": "object",
                "required": ["url"],
                "properties": {
                    "url": {"type": "string", "pattern": "^https?://"},
                    "method": {
                        "type": "string",
                        "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
                    },
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {"type": "string"},
                    "json": {},
                },
                "additionalProperties": False,
            },
            run=_http_request,
            requires_approval=True,
            timeout_seconds=30.0,
        ),
        ToolDef(
            name="create_task",
            kind="builtin",
            description="Hand a piece of work to an agent (by id or by capability).",
            parameters={
                "type": "object",
                "required": ["description"],
                "properties": {
                    "description": {"type": "string", "minLength": 1, "maxLength": 20000},
                    "agent_id": _SLUG,
                    "capability": _SLUG,
                    "priority": {"type": "string", "enum": ["high", "normal", "low"]},
                    "context": {"type": "object"},
                },
                "additionalProperties": False,
            },
            run=_create_task,
        ),
        ToolDef(
            name="start_workflow",
            kind="builtin",
            description="Start a run of a workflow (its current version) with an input.",
            parameters={
                "type": "object",
                "required": ["workflow_id"],
                "properties": {"workflow_id": _SLUG, "input": {"type": "object"}},
                "additionalProperties": False,
            },
            run=_start_workflow,
        ),
        ToolDef(
            name="notify",
            kind="builtin",
            description="Tell the hub's operators something (a notification).",
            parameters={
                "type": "object",
                "required": ["title"],
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "message": {"type": "string", "maxLength": 4000},
                    "severity": {
                        "type": "string",
                        "enum": ["info", "warning", "error", "critical"],
                    },
                },
                "additionalProperties": False,
            },
            run=_notify,
        ),
        ToolDef(
            name="memory_search",
            kind="builtin",
            description="Search the hub's memories by keywords; best matches first.",
            parameters={
                "type": "object",
                "required": ["query"],
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "scope": {"type": "string", "enum": ["session", "agent", "project", "global"]},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                },
                "additionalProperties": False,
            },
            run=_memory_search,
            timeout_seconds=60.0,  # the first semantic-extra embedding loads the model
        ),
        ToolDef(
            name="memory_store",
            kind="builtin",
            description="Remember something under a new key (the agent's own memory by default).",
            parameters={
                "type": "object",
                "required": ["key", "content"],
                "properties": {
                    "key": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"},
                    "content": {"type": "string", "minLength": 1, "maxLength": 100000},
                    "scope": {"type": "string", "enum": ["agent", "session", "global"]},
                    "tags": {"type": "array", "items": _SLUG, "maxItems": 32},
                    "ttl_seconds": {"type": "integer", "minimum": 1},
                },
                "additionalProperties": False,
            },
            run=_memory_store,
            timeout_seconds=60.0,
        ),
    )
}


# --- HTTP tools --------------------------------------------------------------------------


def http_tool(row, headers: dict[str, str]) -> ToolDef:
    """A :class:`ToolDef` for a registered tool (``row`` from ``db.tools``)."""
    method = row.method

    async def run(arguments: dict, _call: Call) -> Any:
        kw: dict[str, Any] = {"headers": headers or None, "timeout": row.timeout_seconds}
        if method in ("GET", "DELETE"):
            kw["params"] = {k: _as_param(v) for k, v in arguments.items()}
        else:
            kw["json_body"] = arguments
        response = await _send(method, row.endpoint, **kw)
        body = _body_of(response)
        if response.status >= 400:
            snippet = body if isinstance(body, str) else json.dumps(body)
            raise ToolFailed(f"the endpoint answered HTTP {response.status}: {snippet[:500]}")
        return body

    return ToolDef(
        name=row.name,
        kind="http",
        source=row.source,
        description=row.description,
        parameters=row.parameters,
        run=run,
        requires_approval=row.requires_approval,
        timeout_seconds=row.timeout_seconds,
        endpoint=row.endpoint,
        method=method,
        header_names=tuple(row.header_names),
        created_at=iso(row.created_at),
    )


def _as_param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _hide_headers(arguments):
    headers = arguments.get("headers") if isinstance(arguments, dict) else None
    if not isinstance(headers, dict) or not headers:
        return arguments
    return {**arguments, "headers": dict.fromkeys(headers, "***")}


def redacted_for_viewer(value):
    """``value`` (an answer: tool executions, turns or tasks with their steps, a trace) as a
    viewer sees it: the header values of every ``http_request`` call (credentials, often)
    replaced by ``***``, their names kept."""
    if isinstance(value, list):
        return [redacted_for_viewer(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: redacted_for_viewer(item) for key, item in value.items()}
    if out.get("tool") == "http_request" and "arguments" in out:  # a tool execution
        out["arguments"] = _hide_headers(out["arguments"])
    if out.get("kind") == "tool" and out.get("name") == "http_request":  # a step
        step_input = out.get("input")
        if isinstance(step_input, dict) and "arguments" in step_input:
            out["input"] = {**step_input, "arguments": _hide_headers(step_input["arguments"])}
    return out
