"""Built-in and registered HTTP tools, and every tool execution."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from db import tools as db_tools
from db.pagination import list_page
from db.tools import ToolExecution
from generated.models import ToolCreate
from handlers import body_fields
from hub.http import context
from hub.services import tools
from hub.services.toolkit import Call, redacted_for_viewer


def list_tools(limit=50, cursor=None, kind=None):
    """Built-in tools and registered HTTP tools, by name."""
    rows, next_cursor = tools.listing(kind=kind, limit=limit, cursor=cursor)
    return {"items": [tool.to_api() for tool in rows], "next_cursor": next_cursor}, 200


def create_tool(body):
    """Register an HTTP tool."""
    fields = body_fields(ToolCreate, body)
    tool = tools.register(fields)
    return tool.to_api(), 201, {"Location": f"/api/v1/tools/{tool.name}"}


def get_tool(tool_name):
    """One tool."""
    return tools.get(tool_name).to_api(), 200


def delete_tool(tool_name):
    """Remove a registered HTTP tool (built-ins cannot be removed)."""
    tools.delete(tool_name)
    return None, 204


async def execute_tool(tool_name, body):
    """Run a tool now with the given arguments."""
    arguments = body.get("arguments") or {}
    tool = await run_in_threadpool(tools.get, tool_name)
    tools.check_arguments(tool, arguments)
    execution = await tools.run(tool, arguments, Call(caller=f"key:{context.actor_id()}"))
    return execution.to_api(), 200


def list_tool_executions(limit=50, cursor=None, tool=None, status=None, task_id=None, turn_id=None):
    """Tool execution history, newest first."""
    query = db_tools.executions(tool=tool, status=status, task_id=task_id, turn_id=turn_id)
    page = list_page(query, ToolExecution.id, limit=limit, cursor=cursor, descending=True)
    return context.for_caller(page, redacted_for_viewer), 200
