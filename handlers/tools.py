"""Built-in and registered HTTP tools, tool groups, and every tool execution."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from db import tools as db_tools
from db.pagination import list_page
from db.tools import ToolExecution, ToolGroup
from generated.models import ToolCreate, ToolGroupCreate, ToolGroupUpdate
from handlers import body_fields
from hub.core.problems import require
from hub.http import context
from hub.services import tool_groups, tools
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


def _group(group: ToolGroup, status: int = 200, *, created: bool = False):
    headers = {"ETag": group.etag}
    if created:
        headers["Location"] = f"/api/v1/tool-groups/{group.name}"
    return group.to_api(), status, headers


def list_tool_groups(limit=50, cursor=None):
    """Tool groups, by name."""
    return list_page(db_tools.groups(), ToolGroup.name, limit=limit, cursor=cursor), 200


def create_tool_group(body):
    """Create a tool group."""
    return _group(tool_groups.create(body_fields(ToolGroupCreate, body)), 201, created=True)


def get_tool_group(group_id):
    """One tool group."""
    return _group(require(db_tools.get_group(group_id), "tool_group", group_id))


def update_tool_group(group_id, body):
    """Replace a tool group's description and tools."""
    fields = body_fields(ToolGroupUpdate, body)
    return _group(tool_groups.update(group_id, fields, if_match=context.header("If-Match")))


def delete_tool_group(group_id):
    """Delete a tool group."""
    tool_groups.delete(group_id)
    return None, 204
