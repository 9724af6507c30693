"""MCP servers registered as tool sources, and the tools each offered at its last discovery."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, iso

SEPARATOR = "__"  # a hub tool name is <server>__<tool>; server ids hold no underscore


class McpServer(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=64)
    url = peewee.TextField()
    headers_encrypted = peewee.TextField(null=True)
    header_names = JSONField(default=list)
    token_encrypted = peewee.TextField(null=True)
    timeout_seconds = peewee.FloatField()
    requires_approval = peewee.BooleanField(default=False)
    protocol_version = peewee.CharField(max_length=32, null=True)  # found by discovery
    server_info = JSONField(null=True)  # {name, version} as the server names itself
    skipped = JSONField(default=list)  # [{name, reason}] of the last discovery
    status = peewee.CharField(max_length=16)  # new | ok | error
    last_error = peewee.TextField(null=True)
    discovered_at = peewee.DateTimeField(null=True)
    tools_expire_at = peewee.DateTimeField(null=True)  # from the server's ttlMs; None: no TTL
    source = peewee.CharField(max_length=80, default="api")  # api, or plugin:<id>
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "mcp_server"

    def to_api(self, *, tool_count: int, breaker: str) -> dict:
        return {
            "id": self.id,
            "url": self.url,
            "header_names": list(self.header_names),
            "has_token": self.token_encrypted is not None,
            "timeout_seconds": self.timeout_seconds,
            "requires_approval": self.requires_approval,
            "status": self.status,
            "last_error": self.last_error,
            "protocol_version": self.protocol_version,
            "server_info": self.server_info,
            "tool_count": tool_count,
            "skipped_tools": list(self.skipped),
            "breaker": breaker,
            "discovered_at": iso(self.discovered_at),
            "tools_expire_at": iso(self.tools_expire_at),
            "source": self.source,
            "created_at": iso(self.created_at),
        }


class McpTool(BaseModel):
    name = peewee.CharField(primary_key=True, max_length=64)  # <server>__<mapped tool name>
    server_id = peewee.CharField(max_length=64, index=True)
    remote_name = peewee.CharField(max_length=128)  # the name the server knows it by
    description = peewee.TextField()
    parameters = JSONField()
    discovered_at = peewee.DateTimeField()

    class Meta:
        table_name = "mcp_tool"

    def to_api(self) -> dict:
        return {
            "name": self.name,
            "server_id": self.server_id,
            "remote_name": self.remote_name,
            "description": self.description,
            "parameters": self.parameters,
            "discovered_at": iso(self.discovered_at),
        }


def get(server_id: str) -> McpServer | None:
    return McpServer.get_or_none(McpServer.id == server_id)


def servers() -> peewee.Select:
    return McpServer.select()


def tools_of(server_id: str) -> peewee.Select:
    return McpTool.select().where(McpTool.server_id == server_id)


def tool_counts() -> dict[str, int]:
    query = McpTool.select(McpTool.server_id, peewee.fn.COUNT(McpTool.name).alias("n")).group_by(
        McpTool.server_id
    )
    return {row.server_id: row.n for row in query}


def get_tool(name: str) -> McpTool | None:
    """The MCP tool with this hub name, or None (a name without ``__`` is never one)."""
    if SEPARATOR not in name:
        return None
    return McpTool.get_or_none(McpTool.name == name)


def all_tools() -> list[McpTool]:
    return list(McpTool.select().order_by(McpTool.name))
