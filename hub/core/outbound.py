"""Outbound HTTP on behalf of agents and users, behind one security policy.

Every request the hub makes for someone else (the ``http_request`` tool, registered HTTP
tools, webhook deliveries) goes through :func:`request`. Only ``http`` and ``https`` URLs
are allowed. The host name is resolved once, and every address it resolves to must be
globally routable: loopback, private, link-local (cloud metadata at 169.254.169.254),
shared (100.64/10), multicast, reserved and unspecified addresses, and their IPv4-mapped,
6to4, Teredo and NAT64 disguises, are refused unless ``AETHER_OUTBOUND_ALLOWLIST`` permits
the host name or the address (see :class:`Allowlist`). The connection then goes to the
checked address itself, never to the name again, so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot reach a refused address; the original name
still travels in the ``Host`` header and, for https, in TLS SNI and certificate
verification. Redirects are followed here, not by httpx, and each hop passes the whole
policy again. The response body is streamed and cut at ``max_bytes`` (after gzip/deflate
decoding, so a compressed bomb cannot blow up either), and ``timeout`` bounds the whole
call, redirects included. Errors are :class:`OutboundRefused` (the policy said no) or
:class:`OutboundFailed` (the network did); their messages name the host but never the
headers, the query string or credentials, so they are safe to show to a user or a model.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ipaddress
import json
import re
import socket
import ssl
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWLIST_SETTING = "AETHER_OUTBOUND_ALLOWLIST"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SCHEMES = {"http": 80, "https": 443}
_BODY_HEADERS = ("content-length", "content-type", "transfer-encoding", "content-encoding")
_MAX_ADDRESSES = 8  # connection attempts per hop when a name has many addresses


class OutboundRefused(Exception):
    """The policy refused the request (scheme, address, too many redirects).

    ``str(exc)`` is a human-readable reason, safe to show to a user or a model.
    """


class OutboundFailed(Exception):
    """The request was allowed but failed: DNS, connection refused, timeout, TLS, protocol.

    ``str(exc)`` is a short safe reason; ``timeout`` tells a timeout from other failures.
    """

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


# -- addresses ------------------------------------------------------------------------------

_RFC1918_AND_ULA = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _as_ip(ip: IPAddress | str) -> IPAddress:
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ip
    return ipaddress.ip_address(ip)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo client)."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def refusal_kind(ip: IPAddress | str) -> str | None:
    """Why ``ip`` is not globally routable ("loopback", "private", ...), or None if it is."""
    ip = _as_ip(ip)
    inner = _embedded_ipv4(ip)
    if inner is not None:
        kind = refusal_kind(inner)
        if kind is not None:
            return kind
        if ip.ipv4_mapped is not None or ip in _NAT64:
            return None  # exactly the (global) IPv4 address it maps to
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.version == 4 and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if any(ip in net for net in _RFC1918_AND_ULA):
        return "private"
    if ip.version == 6 and (ip.is_site_local or ip in _NAT64_LOCAL):
        return "site-local"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or not ip.is_global:
        return "non-global"
    return None


def address_refused(ip: IPAddress | str) -> bool:
    """True for anything not globally routable, including IPv6 disguises of such addresses."""
    return refusal_kind(ip) is not None


# -- allowlist ------------------------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True)
class Allowlist:
    """Hosts and networks the operator lets outbound requests reach despite the policy.

    ``hosts`` are lower-case names matched exactly; an entry ``*.example.com`` matches every
    subdomain of example.com (at any depth) but not example.com itself. A host permitted by
    name may resolve to any address. ``networks`` permit addresses, whatever the name.
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """Entries like ``10.0.0.0/8``, ``127.0.0.1``, ``::1``, ``internal.corp``, ``*.corp``.

        Blank entries are skipped; a malformed one raises ValueError naming it.
        """
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            literal = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
            if any(c in literal for c in ":/") or re.fullmatch(r"[\d.]+", literal):
                try:
                    networks.append(ipaddress.ip_network(literal, strict=True))
                except ValueError as exc:
                    raise ValueError(
                        f"{ALLOWLIST_SETTING}: {entry!r} is not a valid address or network ({exc})"
                    ) from None
                continue
            name = _normal_host(entry)
            labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
            if not name.isascii() or not all(_LABEL.match(label) for label in labels):
                raise ValueError(
                    f"{ALLOWLIST_SETTING}: {entry!r} is not a host name, '*.domain', address "
                    "or network (use the xn-- form for international names)"
                )
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.hosts or self.networks)

    def permits_host(self, host: str) -> bool:
        host = _normal_host(host)
        if not host:
            return False
        if host in self.hosts:
            return True
        parts = host.split(".")
        return any("*." + ".".join(parts[i:]) in self.hosts for i in range(1, len(parts)))

    def permits_address(self, ip: IPAddress | str) -> bool:
        ip = _as_ip(ip)
        candidates = [ip]
        if ip.version == 6 and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if ip.version == 6 and ip.scope_id:
            candidates.append(ipaddress.IPv6Address(str(ip).split("%", 1)[0]))
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )


# -- resolution and TLS ---------------------------------------------------------------------


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to, in the resolver's preferred order, deduplicated.

    Module-level so tests can replace it. Raises OSError (socket.gaierror) on failure.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every call (building one costs ~30 ms)."""
    return httpx.create_ssl_context()


# -- the response ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes  # at most max_bytes, after gzip/deflate decoding
    truncated: bool  # the body was longer than max_bytes (reading stopped there)
    url: str  # the final URL after redirects, without userinfo

    @property
    def charset(self) -> str | None:
        content_type = self.headers.get("content-type")
        if not content_type:
            return None
        message = Message()
        message["content-type"] = content_type
        return message.get_content_charset()

    def text(self) -> str:
        """The body decoded with the response charset (utf-8 if none or unknown)."""
        encoding = self.charset or "utf-8"
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = "utf-8"
        return self.body.decode(encoding, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ValueError if it is not JSON."""
        return json.loads(self.body)


# -- the request ----------------------------------------------------------------------------


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or _SCHEMES.get(url.scheme, 0)


def _parse_url(url: str | httpx.URL, params: Mapping[str, str] | None) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
        if params:
            parsed = parsed.copy_merge_params(params)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise OutboundRefused("refused: the URL is not valid") from None
    return parsed


async def _vet(url: httpx.URL, allowlist: Allowlist | None) -> list[IPAddress]:
    """Apply the policy to one URL: the addresses it may be fetched from, or raise."""
    scheme = url.scheme
    if scheme not in _SCHEMES:
        shown = (scheme[:20] + "…") if len(scheme) > 20 else scheme
        what = f"the {shown!r} scheme is" if shown else "a URL without a scheme is"
        raise OutboundRefused(f"refused: {what} not allowed, only http and https")
    host = url.host
    if not host:
        raise OutboundRefused("refused: the URL has no host")
    name = url.raw_host.decode("ascii")
    port = url.port or _SCHEMES[scheme]
    try:
        addresses = [ipaddress.ip_address(name)]
        literal = True
    except ValueError:
        literal = False
        try:
            addresses = await resolve(name, port)
        except (OSError, UnicodeError) as exc:
            raise OutboundFailed(f"could not resolve {host}: {_short(exc)}") from None
    addresses = addresses[:_MAX_ADDRESSES]
    if not addresses:
        raise OutboundFailed(f"could not resolve {host}: no addresses")
    if allowlist is not None and not literal and allowlist.permits_host(name):
        return addresses
    for ip in addresses:
        kind = refusal_kind(ip)
        if kind is None or (allowlist is not None and allowlist.permits_address(ip)):
            continue
        article = "an" if kind[0] in "aeiou" else "a"
        subject = f"{ip} is" if literal else f"{host} resolves to {ip}, which is"
        raise OutboundRefused(
            f"refused: {subject} {article} {kind} address; "
            f"add it to {ALLOWLIST_SETTING} to allow it"
        )
    return addresses


async def vet_url(url: str, *, allowlist: Allowlist | None = None) -> list[IPAddress]:
    """Apply the policy to ``url`` without requesting it: the addresses a connection may go
    to. For clients that make their own requests (the MCP client): they must connect to one
    of these addresses, never to the name again. Raises OutboundRefused or OutboundFailed."""
    return await _vet(_parse_url(url, None), allowlist)


def _build(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    ip: IPAddress,
    headers: httpx.Headers,
    content: bytes | None,
) -> httpx.Request:
    """A request to ``url`` that connects to ``ip`` but speaks to the host in ``url``."""
    target = url.copy_with(host=str(ip), fragment=None)
    hop_headers = httpx.Headers(headers)
    hop_headers["Host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    return client.build_request(
        method, target, headers=hop_headers, content=content, extensions=extensions
    )


async def _send(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    addresses: list[IPAddress],
    headers: httpx.Headers,
    content: bytes | None,
) -> httpx.Response:
    """Send to the first address that accepts a connection; the response is streaming."""
    host = url.host
    last: httpx.ConnectError | None = None
    for ip in addresses:
        try:
            return await client.send(_build(client, method, url, ip, headers, content), stream=True)
        except httpx.ConnectError as exc:
            last = exc
        except httpx.TimeoutException:
            raise OutboundFailed(f"request to {host} timed out", timeout=True) from None
        except httpx.TransportError as exc:
            raise OutboundFailed(f"request to {host} failed: {_short(exc)}") from None
        except httpx.InvalidURL:
            raise OutboundFailed(f"cannot connect to {host} at {ip}") from None
    reason = _short(last) if last is not None else "no address"
    raise OutboundFailed(f"could not connect to {host}: {reason}")


def _decompressor(encoding: str) -> Any:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


async def _read_body(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool, bool]:
    """Up to ``max_bytes`` of the body: (body, truncated, decoded).

    gzip and deflate are decoded here with a bounded output, so at most ``max_bytes`` of
    decoded data is ever held; other content encodings are returned as they came.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    decoder = _decompressor(encoding)
    raw_deflate_tried = encoding != "deflate"
    body = bytearray()
    truncated = False
    host = response.request.headers.get("host", "the server")
    try:
        async for chunk in response.aiter_raw():
            remaining = max_bytes - len(body)
            if decoder is None:
                piece = chunk
            else:
                try:
                    piece = decoder.decompress(chunk, remaining + 1)
                except zlib.error:
                    if raw_deflate_tried or body:
                        raise
                    # "deflate" is often sent without its zlib wrapper, as raw deflate.
                    raw_deflate_tried = True
                    decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    piece = decoder.decompress(chunk, remaining + 1)
                raw_deflate_tried = True
            if len(piece) > remaining:
                body += piece[:remaining]
                truncated = True
                break
            body += piece
    except httpx.TimeoutException:
        raise OutboundFailed(f"reading the response from {host} timed out", timeout=True) from None
    except httpx.TransportError as exc:
        raise OutboundFailed(f"reading the response from {host} failed: {_short(exc)}") from None
    except zlib.error:
        raise OutboundFailed(f"the response from {host} is not valid {encoding} data") from None
    return bytes(body), truncated, decoder is not None


def _redirect_target(
    status: int, method: str, url: httpx.URL, location: str
) -> tuple[httpx.URL, str, bool]:
    """Where a redirect goes: (url, method, keep_body)."""
    try:
        target = url.join(location.strip())
    except (httpx.InvalidURL, ValueError):
        raise OutboundFailed(f"{url.host} sent an invalid redirect location") from None
    if not target.fragment and url.fragment:
        target = target.copy_with(fragment=url.fragment)
    method = method.upper()
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return target, "GET", False
    return target, method, True


async def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = 1_048_576,
    allowlist: Allowlist | None = None,
    max_redirects: int = 5,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OutboundResponse:
    """Make one HTTP request under the outbound policy (see the module docstring).

    ``timeout`` bounds the whole call: resolution, connections, every redirect and the
    body. Raises OutboundRefused, OutboundFailed, or ValueError for a programming error
    (both ``content`` and ``json_body``). ``transport`` is for tests only.
    """
    if content is not None and json_body is not None:
        raise ValueError("pass content or json_body, not both")
    if max_bytes < 0 or max_redirects < 0:
        raise ValueError("max_bytes and max_redirects must not be negative")
    send_headers = httpx.Headers(headers or {})
    send_headers.pop("host", None)
    if json_body is not None:
        content = json.dumps(
            json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()
        send_headers.setdefault("Content-Type", "application/json")
    send_headers.setdefault("Accept-Encoding", "gzip, deflate")
    target = _parse_url(url, params)
    if transport is None:
        # No keep-alive: a pooled connection is keyed by address, and must never carry a
        # request for another host name than the one its TLS session was verified for.
        transport = httpx.AsyncHTTPTransport(
            verify=_tls_context(),
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(
                transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
            ) as client,
        ):
            return await _follow(
                client,
                method.upper(),
                target,
                send_headers,
                content,
                allowlist,
                max_bytes=max_bytes,
                max_redirects=max_redirects,
            )
    except TimeoutError:
        raise OutboundFailed(f"request timed out after {timeout:g} s", timeout=True) from None


async def _follow(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    headers: httpx.Headers,
    content: bytes | None,
    allowlist: Allowlist | None,
    *,
    max_bytes: int,
    max_redirects: int,
) -> OutboundResponse:
    redirects = 0
    while True:
        addresses = await _vet(url, allowlist)
        response = await _send(client, method, url, addresses, headers, content)
        try:
            location = response.headers.get("location")
            if response.status_code not in REDIRECT_STATUSES or location is None:
                body, truncated, decoded = await _read_body(response, max_bytes)
                final_headers = {k.lower(): v for k, v in response.headers.items()}
                if decoded:
                    final_headers.pop("content-encoding", None)
                    final_headers.pop("content-length", None)
                return OutboundResponse(
                    status=response.status_code,
                    headers=final_headers,
                    body=body,
                    truncated=truncated,
                    url=str(url.copy_with(userinfo=b"")),
                )
        finally:
            await response.aclose()
        if redirects >= max_redirects:
            raise OutboundRefused(f"refused: more than {max_redirects} redirects")
        redirects += 1
        target, method, keep_body = _redirect_target(response.status_code, method, url, location)
        headers = httpx.Headers(headers)
        if not keep_body:
            content = None
            for name in _BODY_HEADERS:
                headers.pop(name, None)
        if _origin(target) != _origin(url):
            # Every header the caller configured may be a credential (X-Api-Key,
            # Private-Token …): none leaves the origin it was meant for.
            headers = httpx.Headers(
                {k: v for k, v in headers.items() if k.lower() in _BODY_HEADERS}
            )
        url = target
