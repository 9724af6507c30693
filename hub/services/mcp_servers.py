"""MCP servers as tool sources: register, discover, delete, and their tools as hub tools.

A server's tools are stored at discovery under hub names ``<server>__<tool>``: the MCP name
lower-cased, each character outside ``a-z 0-9 _ -`` replaced by ``-`` (``Fail.Now`` →
``fail-now``). A tool is skipped, with its reason kept on the server, when that name is
longer than 64 characters, is taken (by a built-in, an HTTP tool or an earlier tool of the
same listing), or its input schema is not a usable JSON Schema for an object.

Calls (:func:`tool_def`'s runner) connect to the server, call the tool under its MCP name and
close the connection; the listing is re-read first in the same connection when its TTL (the
server's ``ttlMs``; none on the older revision, where only discovery refreshes it) has run
out. A circuit breaker per server and process (5 failures in a row open it for 30 s) turns
calls to a failing server into immediate tool errors; discovery is neither blocked nor
counted by it, and a successful discovery closes it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import peewee

from db import mcp_servers as db_mcp
from db import tools as db_tools
from db.base import iso, utcnow, write_transaction
from db.mcp_servers import SEPARATOR, McpServer, McpTool
from hub.core import crypto, outbound
from hub.core.problems import Conflict, ProviderError, Unprocessable, require
from hub.events import log as events
from hub.llm.base import BreakerOpen
from hub.llm.breaker import CircuitBreaker
from hub.services import audit, mcp_client
from hub.services.toolkit import BUILTINS, Call, ToolDef, ToolFailed, schema_errors
from hub.settings import current_settings

NAME_LIMIT = 64
BREAKER_FAILURES = 5
BREAKER_COOLDOWN = 30.0
_UNFIT = re.compile(r"[^a-z0-9_-]")


class McpServerUnreachable(ProviderError):
    code = "mcp_server_unreachable"


# --- names -----------------------------------------------------------------------------------


def hub_name(server_id: str, remote: str) -> str:
    """The hub's name for the MCP tool ``remote`` of ``server_id`` (maybe too long)."""
    return f"{server_id}{SEPARATOR}{_UNFIT.sub('-', remote.lower())}"


def _taken(name: str) -> bool:
    return name in BUILTINS or db_tools.get(name) is not None


def _mapped(server_id: str, listing: mcp_client.Listing) -> tuple[list[dict], list[dict]]:
    """(tools to store, skipped ``{name, reason}``) for one listing, in the server's order."""
    kept: dict[str, dict] = {}
    skipped = []
    for tool in listing.tools:
        name = hub_name(server_id, tool.name)
        schema = tool.input_schema or {"type": "object"}
        problems = schema_errors(schema)
        if len(name) > NAME_LIMIT:
            reason = f"its hub name {name!r} is longer than {NAME_LIMIT} characters"
        elif name in kept:
            reason = f"its hub name {name!r} is already the name of {kept[name]['remote_name']!r}"
        elif _taken(name):
            reason = f"its hub name {name!r} is taken by another tool"
        elif problems:
            reason = f"its input schema is not usable: {problems[0]}"
        else:
            kept[name] = {
                "name": name,
                "remote_name": tool.name,
                "description": (tool.description or tool.title or tool.name)[:4000],
                "parameters": schema,
            }
            continue
        skipped.append({"name": tool.name, "reason": reason})
    return list(kept.values()), skipped


# --- registry writes -------------------------------------------------------------------------


def _refusal(url: str) -> str | None:
    """Why the policy refuses ``url`` by its host alone (an address literal or ``localhost``);
    names are resolved and checked at each connection."""
    allowlist = outbound.Allowlist.parse(current_settings().outbound_allowlist)
    host = httpx.URL(url).host
    if allowlist.permits_host(host):
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is a loopback name"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    kind = outbound.refusal_kind(ip)
    if kind is None or allowlist.permits_address(ip):
        return None
    return f"{ip} is a {kind} address"


def _check_url(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        parsed = None
    if parsed is None or not parsed.host:
        reason = "not a valid URL"
    elif parsed.userinfo:
        reason = "credentials belong in headers or bearer_token, not in the URL"
    else:
        reason = _refusal(url)
        if reason:
            reason = f"refused: {reason}; add it to {outbound.ALLOWLIST_SETTING} to allow it"
    if reason:
        raise Unprocessable(
            "The server URL cannot be used.",
            code="invalid_url",
            errors=[{"field": "body.url", "message": reason}],
        )


def register(body: dict, *, source: str = "api") -> McpServer:
    """Store a server (nothing is contacted yet: ``discover`` does that); ``source`` is
    ``plugin:<id>`` for one a plugin brings."""
    _check_url(body["url"])
    headers = body.get("headers") or {}
    token = body.get("bearer_token")
    if token and any(name.lower() == "authorization" for name in headers):
        raise Unprocessable(
            "Give a bearer_token or an Authorization header, not both.",
            code="conflicting_credentials",
            errors=[{"field": "body.bearer_token", "message": "headers has an Authorization"}],
        )
    box = crypto.box()
    try:
        with write_transaction():
            server = McpServer.create(
                id=body["id"],
                url=body["url"],
                headers_encrypted=box.encrypt(json.dumps(headers)) if headers else None,
                header_names=sorted(headers),
                token_encrypted=box.encrypt(token) if token else None,
                timeout_seconds=body.get("timeout_seconds", 10.0),
                requires_approval=body.get("requires_approval", False),
                skipped=[],
                status="new",
                source=source,
                created_at=utcnow(),
            )
            payload = {"id": server.id, "url": server.url}
            events.emit("mcp_server.created", subject=server.id, payload=payload)
            audit.created("mcp-servers", server.id)
    except peewee.IntegrityError:
        raise Conflict(f"An MCP server {body['id']!r} exists.", code="mcp_server_exists") from None
    return server


def delete(server_id: str) -> None:
    """Remove the server and its tools; agents listing them can no longer call them."""
    with write_transaction():
        require(db_mcp.get(server_id), "mcp_server", server_id)
        McpTool.delete().where(McpTool.server_id == server_id).execute()
        McpServer.delete().where(McpServer.id == server_id).execute()
        events.emit("mcp_server.deleted", subject=server_id, payload={"id": server_id})
    _breakers.pop(server_id, None)


def _endpoint(server: McpServer) -> mcp_client.Endpoint:
    box = crypto.box()
    headers = json.loads(box.decrypt(server.headers_encrypted)) if server.headers_encrypted else {}
    token = box.decrypt(server.token_encrypted) if server.token_encrypted else None
    return mcp_client.Endpoint(
        url=server.url,
        timeout_seconds=server.timeout_seconds,
        protocol_version=server.protocol_version,
        headers=headers,
        token=token,
    )


def _expiry(listing: mcp_client.Listing, now: dt.datetime) -> dt.datetime | None:
    if listing.ttl_ms is None:
        return None
    return now + dt.timedelta(milliseconds=listing.ttl_ms)


def store_listing(server_id: str, listing: mcp_client.Listing) -> dict[str, str]:
    """Replace the server's tools with ``listing``'s; answers {hub name: MCP name}."""
    with write_transaction():
        server = require(db_mcp.get(server_id), "mcp_server", server_id)
        kept, skipped = _mapped(server_id, listing)
        now = utcnow()
        McpTool.delete().where(McpTool.server_id == server_id).execute()
        for tool in kept:
            McpTool.create(server_id=server_id, discovered_at=now, **tool)
        server.protocol_version = listing.protocol_version
        server.server_info = listing.server_info
        server.skipped = skipped
        server.status, server.last_error = "ok", None
        server.discovered_at, server.tools_expire_at = now, _expiry(listing, now)
        server.save()
        events.emit(
            "mcp_server.discovered",
            subject=server_id,
            payload={
                "id": server_id,
                "protocol_version": listing.protocol_version,
                "tools": [tool["name"] for tool in kept],
                "skipped": len(skipped),
            },
        )
    return {tool["name"]: tool["remote_name"] for tool in kept}


def _failed(server_id: str, reason: str) -> None:
    with write_transaction():
        updated = (
            McpServer.update(status="error", last_error=reason)
            .where(McpServer.id == server_id)
            .execute()
        )
        if updated:
            events.emit(
                "mcp_server.discovery_failed",
                subject=server_id,
                payload={"id": server_id, "error": reason},
            )


def _read(server_id: str) -> mcp_client.Endpoint:
    return _endpoint(require(db_mcp.get(server_id), "mcp_server", server_id))


async def discover(server_id: str) -> dict:
    """Connect (either protocol generation), list the tools and store them; answers the
    server's view."""
    endpoint = await asyncio.to_thread(_read, server_id)
    try:
        async with asyncio.timeout(endpoint.timeout_seconds):
            listing = await mcp_client.discover(endpoint)
    except TimeoutError:
        reason = f"the MCP server did not answer within {endpoint.timeout_seconds:g} s"
    except mcp_client.McpRefused as exc:
        await asyncio.to_thread(_failed, server_id, str(exc))
        raise Unprocessable(str(exc), code="outbound_refused") from None
    except (mcp_client.McpUnavailable, mcp_client.McpRejected, mcp_client.ToolError) as exc:
        reason = str(exc)
    else:
        await asyncio.to_thread(store_listing, server_id, listing)
        breaker(server_id).reset()
        return await asyncio.to_thread(lambda: view(_server(server_id)))
    await asyncio.to_thread(_failed, server_id, reason)
    raise McpServerUnreachable(f"Discovery failed: {reason}")


def _server(server_id: str) -> McpServer:
    return require(db_mcp.get(server_id), "mcp_server", server_id)


# --- reading ---------------------------------------------------------------------------------


def view(server: McpServer, tool_count: int | None = None) -> dict:
    if tool_count is None:
        tool_count = db_mcp.tools_of(server.id).count()
    return server.to_api(tool_count=tool_count, breaker=breaker(server.id).state)


def views(servers: list[McpServer]) -> list[dict]:
    counts = db_mcp.tool_counts()
    return [view(server, counts.get(server.id, 0)) for server in servers]


# --- breakers --------------------------------------------------------------------------------

_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker(server_id: str) -> CircuitBreaker:
    """This process's breaker for the server."""
    with _breakers_lock:
        found = _breakers.get(server_id)
        if found is None:
            found = _breakers[server_id] = CircuitBreaker(BREAKER_FAILURES, BREAKER_COOLDOWN)
        return found


# --- the tools as hub tools ------------------------------------------------------------------


@dataclass(frozen=True)
class _CallState:
    endpoint: mcp_client.Endpoint
    stale: bool


def _call_state(server_id: str) -> _CallState:
    server = db_mcp.get(server_id)
    if server is None:
        raise ToolFailed(f"the MCP server {server_id!r} was removed")
    expires = server.tools_expire_at
    return _CallState(_endpoint(server), expires is not None and expires <= utcnow())


def _runner(server_id: str, hub: str, remote: str):
    async def run(arguments: dict, _call: Call) -> Any:
        state = await asyncio.to_thread(_call_state, server_id)
        guard = breaker(server_id)
        try:
            trial = guard.acquire(server_id)
        except BreakerOpen as exc:
            raise ToolFailed(
                f"the MCP server {server_id!r} failed {BREAKER_FAILURES} times in a row; "
                f"calls are paused for {exc.retry_after:.0f} s"
            ) from None
        deadline = time.monotonic() + state.endpoint.timeout_seconds
        verdict, outcome, failure = "success", None, None
        try:
            async with mcp_client.connect(state.endpoint) as client:
                name = remote
                if state.stale:
                    listing = await mcp_client.list_tools(client)
                    names = await asyncio.to_thread(store_listing, server_id, listing)
                    name = names.get(hub)
                if name is None:
                    failure = "the MCP server no longer offers this tool"
                else:
                    outcome = await mcp_client.call_tool(client, name, arguments)
        except (mcp_client.ToolError, mcp_client.McpRejected) as exc:
            failure = str(exc)
        except mcp_client.McpRefused as exc:
            verdict, failure = "none", str(exc)
        except mcp_client.McpUnavailable as exc:
            verdict, failure = "failure", str(exc)
        except asyncio.CancelledError:
            # Cancelled at the deadline: the caller's timeout, which counts against the server.
            if time.monotonic() >= deadline - 0.05:
                guard.record_failure(trial)
            else:
                guard.release(trial)
            raise
        except BaseException:
            guard.release(trial)
            raise
        if verdict == "success":
            guard.record_success(trial)
        elif verdict == "failure":
            guard.record_failure(trial)
        else:
            guard.release(trial)
        if failure is not None:
            raise ToolFailed(failure)
        return outcome

    return run


def tool_def(row: McpTool, server: McpServer) -> ToolDef:
    names = tuple(server.header_names) + (("Authorization",) if server.token_encrypted else ())
    return ToolDef(
        name=row.name,
        kind="mcp",
        description=row.description,
        parameters=row.parameters,
        run=_runner(server.id, row.name, row.remote_name),
        requires_approval=server.requires_approval,
        timeout_seconds=server.timeout_seconds,
        endpoint=server.url,
        method=None,
        header_names=names,
        created_at=iso(row.discovered_at),
        source=server.source,
    )


def tool(name: str) -> ToolDef | None:
    """The MCP tool with this hub name, as a hub tool."""
    row = db_mcp.get_tool(name)
    if row is None:
        return None
    server = db_mcp.get(row.server_id)
    return tool_def(row, server) if server else None


def tools() -> list[ToolDef]:
    servers = {server.id: server for server in db_mcp.servers()}
    rows = [row for row in db_mcp.all_tools() if row.server_id in servers]
    return [tool_def(row, servers[row.server_id]) for row in rows]
