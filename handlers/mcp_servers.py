"""MCP servers as tool sources: register, read, delete, discover, and their tools."""

from __future__ import annotations

from db import mcp_servers as db_mcp
from db.mcp_servers import McpServer, McpTool
from db.pagination import list_page
from generated.models import McpServerCreate
from handlers import body_fields
from hub.core.problems import require
from hub.services import mcp_servers


def list_mcp_servers(limit=50, cursor=None):
    """MCP servers registered as tool sources, by id."""
    query = db_mcp.servers()
    return list_page(query, McpServer.id, limit=limit, cursor=cursor, views=mcp_servers.views), 200


def create_mcp_server(body):
    """Register an MCP server (streamable HTTP)."""
    server = mcp_servers.register(body_fields(McpServerCreate, body))
    return mcp_servers.view(server), 201, {"Location": f"/api/v1/mcp-servers/{server.id}"}


def get_mcp_server(server_id):
    """One MCP server."""
    return mcp_servers.view(require(db_mcp.get(server_id), "mcp_server", server_id)), 200


def delete_mcp_server(server_id):
    """Remove an MCP server and its tools."""
    mcp_servers.delete(server_id)
    return None, 204


async def discover_mcp_server(server_id):
    """Connect to the server, list its tools and register them."""
    return await mcp_servers.discover(server_id), 200


def list_mcp_server_tools(server_id, limit=50, cursor=None):
    """The tools the server offered at its last discovery."""
    require(db_mcp.get(server_id), "mcp_server", server_id)
    return list_page(db_mcp.tools_of(server_id), McpTool.name, limit=limit, cursor=cursor), 200
