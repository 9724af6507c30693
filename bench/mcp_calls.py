"""``mcp``: what the hub adds to one MCP tool call.

What it measures
    One MCP server (``mcp_app`` below: the ``mcp`` package's ``MCPServer``, stateless
    2026-07-28 revision, over streamable HTTP, one fast tool ``add``) in its own uvicorn
    process, and the hub (SQLite) with that server registered and discovered (loopback
    allowlisted). ``--mcp-calls`` (200) sequential calls of
    ``POST /api/v1/tools/bench__add/execute`` on one keep-alive connection, after 20 warm-up
    calls, each timed at the client; then as many calls made directly with the ``mcp``
    ``Client`` the way the hub makes them (a connection per call, the protocol version adopted
    without a probe), and as many on one connection kept open. Reports p50/p99 of each and
    the hub's added latency: hub p50 - direct (a connection per call) p50, which is the
    API's own cost plus the tool execution record (a write transaction and its event), which
    the same number of calls of the built-in ``current_time`` through the hub shows alone.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.harness import Context, log, percentile
from bench.report import Table, num

NAME = "mcp"
SMOKE = {"mcp_calls": 5}
WARM_UP = 20
SERVER_ID = "bench"
APP = "bench.mcp_calls:mcp_app"


def mcp_app():
    """The MCP server the bench calls (a uvicorn factory), with ``/health/live``."""
    from mcp.server.mcpserver import MCPServer
    from starlette.responses import PlainTextResponse

    server = MCPServer("bench", version="1")

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.custom_route("/health/live", methods=["GET"])
    async def live(_request):
        return PlainTextResponse("ok")

    return server.streamable_http_app(stateless_http=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("MCP tool calls")
    group.add_argument(
        "--mcp-calls", type=int, default=200, help="calls per path, after 20 warm-up (200)"
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.mcp_calls < 1:
        parser.error("--mcp-calls must be at least 1")


def _figure(times_ms: list[float], errors: int) -> dict[str, Any]:
    return {
        "calls": len(times_ms),
        "errors": errors,
        "p50_ms": round(percentile(times_ms, 50), 3) if times_ms else None,
        "p99_ms": round(percentile(times_ms, 99), 3) if times_ms else None,
    }


def _through_hub(hub: harness.Server, secret: str, calls: int, tool: str) -> dict[str, Any]:
    path = f"/api/v1/tools/{tool}/execute"
    arguments = (lambda i: {"a": i, "b": 1}) if tool.endswith("add") else (lambda i: {})
    headers = {"Authorization": f"Bearer {secret}"}
    times, errors = [], 0
    with httpx.Client(base_url=hub.base_url, headers=headers, timeout=30) as http:
        for i in range(WARM_UP + calls):
            started = time.perf_counter()
            answer = http.post(path, json={"arguments": arguments(i)})
            elapsed = (time.perf_counter() - started) * 1000
            ok = answer.status_code == 200 and answer.json()["status"] == "ok"
            if i >= WARM_UP:
                times.append(elapsed)
                errors += not ok
    return _figure(times, errors)


async def _direct(url: str, calls: int, *, per_call: bool) -> dict[str, Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp_types.version import LATEST_MODERN_VERSION

    tls = httpx2.create_ssl_context()  # made once, as the hub does (one costs ~30 ms)

    @contextlib.asynccontextmanager
    async def client():
        async with httpx2.AsyncClient(verify=tls, trust_env=False) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode=LATEST_MODERN_VERSION, cache=None) as session:
                yield session

    times, errors = [], 0
    if per_call:
        for i in range(WARM_UP + calls):
            started = time.perf_counter()
            async with client() as session:
                result = await session.call_tool("add", {"a": i, "b": 1})
            if i >= WARM_UP:
                times.append((time.perf_counter() - started) * 1000)
                errors += result.is_error
        return _figure(times, errors)
    async with client() as session:
        for i in range(WARM_UP + calls):
            started = time.perf_counter()
            result = await session.call_tool("add", {"a": i, "b": 1})
            if i >= WARM_UP:
                times.append((time.perf_counter() - started) * 1000)
                errors += result.is_error
    return _figure(times, errors)


def measure(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """The same tool call through the hub, then directly, one call at a time."""
    calls = args.mcp_calls
    ctx.busy_before()
    data_dir = Path(tempfile.mkdtemp(prefix="aether-bench-mcp-"))
    try:
        with harness.running([]) as servers:
            secret = harness.prepare_data(data_dir)
            servers.append(harness.start_server("mcp", APP, data_dir))
            env = {"AETHER_OUTBOUND_ALLOWLIST": "127.0.0.1"}
            servers.append(harness.start_hub("hub", data_dir, env))
            for server in servers:
                harness.wait_ready(server)
            mcp, hub = servers
            url = f"{mcp.base_url}/mcp"
            body = {"id": SERVER_ID, "url": url, "timeout_seconds": 10}
            harness.api(hub, "POST", "/api/v1/mcp-servers", secret, body)
            harness.api(hub, "POST", f"/api/v1/mcp-servers/{SERVER_ID}/discover", secret)
            log(f"mcp: {calls} calls through the hub")
            via_hub = _through_hub(hub, secret, calls, f"{SERVER_ID}__add")
            builtin = _through_hub(hub, secret, calls, "current_time")
            log(f"mcp: {calls} calls direct, a connection per call, then on one connection")
            per_call = harness.run_async(_direct(url, calls, per_call=True))
            session = harness.run_async(_direct(url, calls, per_call=False))
            hub.check_alive()
            mcp.check_alive()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    added = None
    if via_hub["p50_ms"] is not None and per_call["p50_ms"] is not None:
        added = round(via_hub["p50_ms"] - per_call["p50_ms"], 3)
    return {
        "hub": via_hub,
        "builtin": builtin,
        "direct": per_call,
        "session": session,
        "added_p50_ms": added,
    }


def failed(result: dict[str, Any]) -> bool:
    return any(result[path]["errors"] for path in ("hub", "builtin", "direct", "session"))


def count(result: dict[str, Any]) -> int:
    return sum(result[path]["calls"] for path in ("hub", "builtin", "direct", "session"))


def tables(result: dict[str, Any]) -> list[Table]:
    records = [
        ("hub: POST /api/v1/tools/{name}/execute, the MCP tool", result["hub"]),
        ("hub: the same for the built-in current_time (no network)", result["builtin"]),
        ("direct: mcp Client, a connection per call (as the hub)", result["direct"]),
        ("direct: mcp Client, one connection", result["session"]),
    ]
    columns = [
        ("path", lambda r: r[0]),
        ("calls", lambda r: str(r[1]["calls"])),
        ("errors", lambda r: str(r[1]["errors"])),
        ("p50 ms", lambda r: num(r[1]["p50_ms"])),
        ("p99 ms", lambda r: num(r[1]["p99_ms"])),
    ]
    notes = [
        f"the hub adds {num(result['added_p50_ms'])} ms per call at p50 over a direct call made "
        "the way it makes them (its API, the tool execution record, the outbound policy check)",
        "the built-in's row is the API and the execution record alone: the rest of the MCP "
        "row is the connection made per call (the outbound check, the client, its teardown)",
        "one fast tool (add) on a stateless 2026-07-28 MCP server on loopback; calls one at a "
        "time after 20 warm-up calls, timed at the client",
    ]
    return [Table.of("MCP tool calls: through the hub and direct", columns, records, notes)]
