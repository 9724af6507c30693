"""A real MCP server for tests, built with the ``mcp`` package and served over streamable HTTP
on 127.0.0.1 in a process of its own (so a test can kill it mid-call):

    python -m tests.mcp_test_server stateless|legacy

prints ``port <n>`` once it listens. ``stateless`` speaks the 2026-07-28 revision (and gives
its tool list a 60 s TTL); ``legacy`` refuses every request of that revision the way a
2025-11-25 server does (a 400 without a JSON-RPC answer), so clients must use the
``initialize`` handshake and its session. Tools: ``add`` (fast), ``slow`` (sleeps as long as
asked), ``Fail.Now`` (raises; its name needs the hub's mapping), ``whoami`` (the
``Authorization``, ``X-Tenant`` and ``Host`` headers it received), ``big`` (a text of the size
asked) and one whose name is too long for the hub.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvicorn
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

TEST_HOST = "mcp.test"  # a name no DNS answers: tests resolve it themselves
TOO_LONG = "a_tool_name_that_is_much_too_long_for_the_hub_to_offer_it_at_all"


def build(mode: str):
    hints = {"tools/list": CacheHint(60_000)}
    server = MCPServer(f"test-{mode}", version="1.0.0", cache_hints=hints)

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Sleep, then answer.")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "woke up"

    @server.tool(name="Fail.Now", description="Always fails.")
    def fail_now() -> str:
        raise RuntimeError("the disk is on fire")

    @server.tool(description="The credentials and Host this server received.")
    def whoami(ctx: Context) -> dict:
        request = ctx.request_context.request
        headers = request.headers if request is not None else {}
        return {
            "authorization": headers.get("authorization"),
            "tenant": headers.get("x-tenant"),
            "host": headers.get("host"),
        }

    @server.tool(description="A text of the size asked.")
    def big(size: int) -> str:
        return "x" * size

    @server.tool(name=TOO_LONG, description="Never offered by the hub.")
    def too_long() -> str:
        return "unreachable"

    security = TransportSecuritySettings(  # the Host names a test may give it
        allowed_hosts=["127.0.0.1:*", "localhost:*", f"{TEST_HOST}:*"],
        allowed_origins=["http://127.0.0.1:*"],
    )
    app = server.streamable_http_app(
        stateless_http=mode == "stateless", transport_security=security
    )
    return app if mode == "stateless" else _legacy_only(app)


def _legacy_only(app):
    """Answer every request of a 2026 revision as a server that predates it does."""

    async def legacy(scope, receive, send):
        if scope["type"] == "http":
            version = dict(scope["headers"]).get(b"mcp-protocol-version", b"").decode()
            if version >= "2026":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "http.response.body", "body": b"Bad Request: Unsupported"})
                return
        await app(scope, receive, send)

    return legacy


def main() -> None:
    mode = sys.argv[1]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print("port", sock.getsockname()[1], flush=True)
    config = uvicorn.Config(build(mode), log_level="critical", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
