"""Talking to MCP servers over streamable HTTP, with the ``mcp`` package's :class:`Client`.

Both protocol generations: discovery connects with ``mode="auto"``, which probes the
2026-07-28 ``server/discover`` and falls back to the older ``initialize`` handshake; the
version it settles on is stored, and later calls connect with it directly (a modern version
is adopted without a probe, an older one goes straight to ``initialize``).

Every connection passes :mod:`hub.core.outbound`'s address policy first (loopback, private
and the like refused unless ``AETHER_OUTBOUND_ALLOWLIST`` allows them), and then goes to the
checked address only (:class:`PinnedTransport`): the name is not resolved again, so a DNS
answer that changes after the check cannot reach a refused address; the name still travels
in ``Host`` and, for https, in SNI and certificate checks. Requests to any other origin (a
redirect, say) are refused.

A connection is made per call (and per discovery) and closed after it: nothing is held
between calls, so a server that dies costs nothing but the call in flight. Every network
step is bounded by the server's timeout (httpx2's own timeouts), and the caller bounds the
whole call with it as well.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp_types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from hub import __version__
from hub.core import outbound
from hub.settings import current_settings

CLIENT_INFO = mcp_types.Implementation(name="aether-hub", version=__version__)
MAX_PAGES = 100  # tools/list pages read at most: a paginator that never ends cannot hang us


class McpUnavailable(Exception):
    """The server could not be reached or did not answer properly (counts against its
    breaker); ``str()`` is safe to show to a user or a model (no header or token)."""


class McpRefused(Exception):
    """The outbound policy refused the server's address (no verdict on the server)."""


class McpRejected(Exception):
    """The server answered with a protocol error (it is up: not a breaker failure)."""


class ToolError(Exception):
    """The tool ran and reported an error (``isError``): the server is fine."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach one server. ``headers`` and ``token`` are decrypted credentials: never
    logged, never shown (the dataclass ``repr`` leaves them out)."""

    url: str
    timeout_seconds: float
    protocol_version: str | None = None  # None: not discovered yet (probe)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Listing:
    protocol_version: str
    server_info: dict | None
    tools: list[mcp_types.Tool]
    ttl_ms: int | None  # None: the revision gives no TTL (2025-11-25 and older)


# --- the pinned transport --------------------------------------------------------------------


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx2.create_ssl_context()


class PinnedTransport(httpx2.AsyncBaseTransport):
    """Sends every request of one client to the addresses the policy checked, and only for
    the URL's own origin."""

    def __init__(self, url: str, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]):
        self._origin = _origin(httpx2.URL(url))
        self._addresses = addresses
        self._inner = httpx2.AsyncHTTPTransport(verify=_tls_context(), trust_env=False)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if _origin(request.url) != self._origin:
            raise httpx2.ConnectError(f"refused: {request.url.host} is not the server's origin")
        name = request.url.raw_host.decode("ascii")
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": name}
        last: Exception | None = None
        for ip in self._addresses:
            request.url = request.url.copy_with(host=str(ip))  # Host keeps the name
            try:
                return await self._inner.handle_async_request(request)
            except httpx2.ConnectError as exc:
                last = exc
        raise last or httpx2.ConnectError("no address to connect to")

    async def aclose(self) -> None:
        await self._inner.aclose()


def _origin(url: httpx2.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


# --- connections -----------------------------------------------------------------------------


def _mode(protocol_version: str | None) -> str:
    if protocol_version is None:
        return "auto"
    return protocol_version if protocol_version in MODERN_PROTOCOL_VERSIONS else "legacy"


@contextlib.asynccontextmanager
async def connect(endpoint: Endpoint) -> AsyncIterator[Client]:
    """A connected :class:`Client` (the handshake, if any, done); closed on exit."""
    allowlist = outbound.Allowlist.parse(current_settings().outbound_allowlist)
    try:
        addresses = await outbound.vet_url(endpoint.url, allowlist=allowlist)
    except outbound.OutboundRefused as exc:
        raise McpRefused(str(exc)) from None
    except outbound.OutboundFailed as exc:
        raise McpUnavailable(str(exc)) from None
    headers = dict(endpoint.headers)
    if endpoint.token:
        headers["Authorization"] = f"Bearer {endpoint.token}"
    http = httpx2.AsyncClient(
        transport=PinnedTransport(endpoint.url, addresses),
        headers=headers,
        timeout=httpx2.Timeout(endpoint.timeout_seconds),
        follow_redirects=False,
        trust_env=False,
    )
    limit = current_settings().outbound_max_response_bytes
    client = Client(
        streamable_http_client(endpoint.url, http_client=http, max_sse_event_size=limit),
        mode=_mode(endpoint.protocol_version),
        read_timeout_seconds=endpoint.timeout_seconds,
        client_info=CLIENT_INFO,
        cache=None,  # the hub keeps the listing itself, with the server's TTL
    )
    async with http:
        try:
            async with client:
                yield client
        except Exception as exc:
            raise _classified(exc) from None


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _classified(exc: BaseException) -> Exception:
    """One of this module's errors for whatever the client raised (task groups wrap)."""
    exc = _leaf(exc)
    if isinstance(exc, McpUnavailable | McpRefused | McpRejected | ToolError):
        return exc
    if isinstance(exc, MCPError):
        if exc.code == mcp_types.CONNECTION_CLOSED:
            return McpUnavailable("the MCP server closed the connection")
        return McpRejected(f"the MCP server answered error {exc.code}: {_short(exc.error.message)}")
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return McpUnavailable("the MCP server did not answer in time")
    if isinstance(exc, httpx2.HTTPError | OSError):
        return McpUnavailable(f"could not talk to the MCP server: {_short(str(exc))}")
    return McpUnavailable(f"the MCP server's answer could not be used: {type(exc).__name__}")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- what the hub asks -----------------------------------------------------------------------


async def list_tools(client: Client) -> Listing:
    """Every tool the connected server offers (all pages), with the TTL it gives."""
    tools: list[mcp_types.Tool] = []
    cursor, ttl_ms = None, None
    modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
    try:
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            if cursor is None and modern:
                ttl_ms = page.ttl_ms
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
    except Exception as exc:
        raise _classified(exc) from None
    info = client.server_info
    return Listing(
        protocol_version=client.protocol_version,
        server_info={"name": info.name, "version": info.version} if info else None,
        tools=tools,
        ttl_ms=ttl_ms,
    )


async def discover(endpoint: Endpoint) -> Listing:
    async with connect(endpoint) as client:
        return await list_tools(client)


async def call_tool(client: Client, name: str, arguments: dict) -> Any:
    """The tool's result as JSON: its structured content when it gives one, else its one text
    block, else its content blocks. :class:`ToolError` when the tool reports an error or the
    result is larger than ``AETHER_OUTBOUND_MAX_RESPONSE_BYTES`` (as JSON)."""
    try:
        result = await client.call_tool(name, arguments)
    except Exception as exc:
        raise _classified(exc) from None
    if result.is_error:
        text = " ".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))
        raise ToolError(_short(text or "the tool reported an error", 2000))
    if result.structured_content is not None:
        outcome = result.structured_content
    elif len(result.content) == 1 and isinstance(result.content[0], mcp_types.TextContent):
        outcome = result.content[0].text
    else:
        outcome = [
            block.model_dump(mode="json", by_alias=True, exclude_none=True)
            for block in result.content
        ]
    size, limit = len(json.dumps(outcome)), current_settings().outbound_max_response_bytes
    if size > limit:
        raise ToolError(f"the tool's result is {size} bytes, more than the {limit} allowed")
    return outcome
