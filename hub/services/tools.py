"""Tool registry writes and tool execution: every call, by a person or an agent, is recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import peewee

from db import tools as db_tools
from db.base import new_id, utcnow, write_transaction
from db.pagination import decode_cursor, encode_cursor
from db.tools import Tool, ToolExecution
from hub.core import crypto
from hub.core.problems import Conflict, NotFound, Unprocessable
from hub.events import log as events
from hub.services import audit, mcp_servers
from hub.services.toolkit import (
    BUILTINS,
    SKILL_TOOLS,
    Call,
    ToolDef,
    ToolFailed,
    argument_errors,
    http_tool,
    schema_errors,
)

log = logging.getLogger("aether.tools")


def _from_row(row: Tool) -> ToolDef:
    headers = {}
    if row.headers_encrypted:
        headers = json.loads(crypto.box().decrypt(row.headers_encrypted))
    return http_tool(row, headers)


def resolve(name: str) -> ToolDef | None:
    """The built-in, registered HTTP or MCP tool called ``name``."""
    if name in BUILTINS:
        return BUILTINS[name]
    row = db_tools.get(name)
    return _from_row(row) if row else mcp_servers.tool(name)


def get(name: str) -> ToolDef:
    tool = resolve(name)
    if tool is None:
        raise NotFound(f"No tool named {name!r}.", code="tool_not_found")
    return tool


def listing(
    *, kind: str | None, limit: int, cursor: str | None
) -> tuple[list[ToolDef], str | None]:
    """Built-ins, registered HTTP tools and MCP servers' tools by name, one page."""
    everything = [
        *BUILTINS.values(),
        *(_from_row(row) for row in db_tools.registered()),
        *mcp_servers.tools(),
    ]
    everything = sorted(
        (tool for tool in everything if kind in (None, tool.kind)), key=lambda t: t.name
    )
    if cursor:
        after = decode_cursor(cursor, str)
        everything = [tool for tool in everything if tool.name > after]
    if len(everything) <= limit:
        return everything, None
    return everything[:limit], encode_cursor(everything[limit - 1].name)


def register(body: dict, *, source: str = "api") -> ToolDef:
    """Store an HTTP tool; its headers are encrypted. ``source``: ``plugin:<id>`` for one a
    plugin brings."""
    name = body["name"]
    if name in BUILTINS or name in SKILL_TOOLS:
        raise Conflict(f"{name!r} is a built-in tool.", code="tool_exists")
    if mcp_servers.tool(name) is not None:
        raise Conflict(f"{name!r} is an MCP server's tool.", code="tool_exists")
    parameters = body.get("parameters") or {"type": "object"}
    problems = schema_errors(parameters)
    if problems:
        raise Unprocessable(
            "The parameters are not a usable JSON Schema.",
            code="invalid_schema",
            errors=[{"field": "body.parameters", "message": m} for m in problems],
        )
    headers = body.get("headers") or {}
    try:
        with write_transaction():
            row = Tool.create(
                name=name,
                description=body["description"],
                parameters=parameters,
                endpoint=body["endpoint"],
                method=body.get("method", "POST"),
                headers_encrypted=crypto.box().encrypt(json.dumps(headers)) if headers else None,
                header_names=sorted(headers),
                timeout_seconds=body.get("timeout_seconds", 10.0),
                requires_approval=body.get("requires_approval", False),
                source=source,
                created_at=utcnow(),
            )
            audit.created("tools", row.name)
    except peewee.IntegrityError:
        raise Conflict(f"A tool named {name!r} exists.", code="tool_exists") from None
    return _from_row(row)


def delete(name: str) -> None:
    if name in BUILTINS:
        raise Conflict(f"{name!r} is a built-in tool; it cannot be removed.", code="builtin_tool")
    if mcp_servers.tool(name) is not None:
        raise Conflict(
            f"{name!r} is an MCP server's tool: delete the server to remove its tools.",
            code="mcp_tool",
        )
    with write_transaction():
        if Tool.delete().where(Tool.name == name).execute() == 0:
            raise NotFound(f"No tool named {name!r}.", code="tool_not_found")


# --- execution ---------------------------------------------------------------------------


def check_arguments(tool: ToolDef, arguments: dict) -> None:
    """422 naming each field that breaks the tool's schema."""
    errors = argument_errors(tool.parameters, arguments)
    if errors:
        raise Unprocessable(
            f"The arguments do not fit {tool.name!r}'s parameters.",
            code="invalid_arguments",
            errors=[{**e, "field": "body." + e["field"]} for e in errors],
        )


async def run(
    tool: ToolDef, arguments: dict, call: Call, *, approval_id: str | None = None
) -> ToolExecution:
    """Run ``tool`` (arguments already valid or not: invalid ones are a tool error), record
    the execution and return it. Never raises for a tool's own failure."""
    status, result, error, duration = await execute(tool, arguments, call)
    return await asyncio.to_thread(
        record, tool.name, arguments, status, result, error, duration, call, approval_id
    )


async def execute(tool: ToolDef, arguments: dict, call: Call) -> tuple[str, object, str, float]:
    """Run ``tool`` without recording it: ``(status, result, error, duration_ms)``, status
    ``ok`` or ``error``. The caller records it (``record``), in the transaction of its choice."""
    started = time.perf_counter()
    status, result, error = "ok", None, None
    errors = argument_errors(tool.parameters, arguments)
    if errors:
        status = "error"
        error = "invalid arguments: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    else:
        try:
            result = await asyncio.wait_for(tool.run(arguments, call), tool.timeout_seconds)
        except ToolFailed as exc:
            status, error = "error", str(exc)
        except TimeoutError:
            status, error = "error", f"the tool took longer than {tool.timeout_seconds:g} s"
        except Exception as exc:  # a bug in a tool: the model hears of it, the log has it
            log.error("tool failed", exc_info=exc, extra={"tool": tool.name})
            status, error = "error", "the tool failed unexpectedly"
    return status, result, error, round((time.perf_counter() - started) * 1000, 3)


def record(
    tool: str,
    arguments: dict,
    status: str,
    result,
    error: str | None,
    duration_ms: float,
    call: Call,
    approval_id: str | None = None,
) -> ToolExecution:
    trace_id = call.trace_id or events.new_trace_id()  # a direct call starts a trace
    with write_transaction():
        execution = ToolExecution.create(
            id=new_id("tex"),
            tool=tool,
            arguments=arguments,
            status=status,
            result=result,
            error=error,
            duration_ms=duration_ms,
            caller=call.caller,
            task_id=call.task_id,
            turn_id=call.turn_id,
            approval_id=approval_id,
            trace_id=trace_id,
            created_at=utcnow(),
        )
        events.emit(
            "tool.executed",
            subject=execution.id,
            trace_id=trace_id,
            payload={
                "execution_id": execution.id,
                "tool": tool,
                "status": status,
                "caller": call.caller,
                "task_id": call.task_id,
                "turn_id": call.turn_id,
                "duration_ms": duration_ms,
            },
        )
    return execution
