"""Registered HTTP tools, tool groups, and the record of every tool execution."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, Versioned, iso


class Tool(BaseModel):
    name = peewee.CharField(primary_key=True, max_length=64)
    description = peewee.TextField()
    parameters = JSONField()
    endpoint = peewee.TextField()
    method = peewee.CharField(max_length=8)
    headers_encrypted = peewee.TextField(null=True)
    header_names = JSONField(default=list)
    timeout_seconds = peewee.FloatField()
    requires_approval = peewee.BooleanField(default=False)
    source = peewee.CharField(max_length=80, default="api")  # api, or plugin:<id>
    created_at = peewee.DateTimeField()


class ToolGroup(Versioned, BaseModel):
    """A named set of tools; an agent's ``tools`` may list it as ``group:<name>``."""

    name = peewee.CharField(primary_key=True, max_length=64)
    description = peewee.TextField(default="")
    tools = JSONField()
    source = peewee.CharField(max_length=80)  # seed, api (later: plugin:<id>)
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "tool_group"

    def to_api(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "tools": list(self.tools),
            "source": self.source,
            "version": self.version,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class ToolExecution(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    tool = peewee.CharField(max_length=64, index=True)
    arguments = JSONField()
    status = peewee.CharField(max_length=16)
    result = JSONField(null=True)
    error = peewee.TextField(null=True)
    duration_ms = peewee.FloatField()
    caller = peewee.CharField(max_length=64)
    task_id = peewee.CharField(max_length=40, null=True, index=True)
    turn_id = peewee.CharField(max_length=40, null=True, index=True)
    approval_id = peewee.CharField(max_length=40, null=True)
    trace_id = peewee.CharField(max_length=64, null=True, index=True)
    created_at = peewee.DateTimeField()

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "tool": self.tool,
            "arguments": self.arguments,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "duration_ms": round(self.duration_ms),  # timed on a monotonic clock
            "caller": self.caller,
            "task_id": self.task_id,
            "turn_id": self.turn_id,
            "approval_id": self.approval_id,
            "trace_id": self.trace_id,
            "created_at": iso(self.created_at),
        }


def get(name: str) -> Tool | None:
    return Tool.get_or_none(Tool.name == name)


def registered() -> list[Tool]:
    return list(Tool.select().order_by(Tool.name))


def groups() -> peewee.Select:
    return ToolGroup.select()


def get_group(name: str) -> ToolGroup | None:
    return ToolGroup.get_or_none(ToolGroup.name == name)


def executions(
    *,
    tool: str | None = None,
    status: str | None = None,
    task_id: str | None = None,
    turn_id: str | None = None,
) -> peewee.Select:
    query = ToolExecution.select()
    if tool:
        query = query.where(ToolExecution.tool == tool)
    if status:
        query = query.where(ToolExecution.status == status)
    if task_id:
        query = query.where(ToolExecution.task_id == task_id)
    if turn_id:
        query = query.where(ToolExecution.turn_id == turn_id)
    return query
