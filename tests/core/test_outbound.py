"""The outbound HTTP policy, against real local servers (HTTP and HTTPS) on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import ipaddress
import json
import socket
import ssl
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.core import outbound
from hub.core.outbound import (
    Allowlist,
    OutboundFailed,
    OutboundRefused,
    OutboundResponse,
    address_refused,
    request,
)
from tests.servers import refusing_port

LOOPBACK = Allowlist.parse(["127.0.0.1"])
BIG = 5 * 1024 * 1024


def run(coro):
    return asyncio.run(coro)


# -- a real local server --------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.route()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def route(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {
            "method": self.command,
            "path": url.path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        self.server.seen.append(seen)
        path = url.path
        if path == "/echo":
            self.send(200, json.dumps(seen).encode(), Content_Type="application/json")
        elif path == "/r301":
            self.send(301, Location="echo?via=301")  # relative to /r301
        elif path == "/r303":
            self.send(303, Location="/echo?via=303")
        elif path == "/r307":
            self.send(307, Location="/echo?via=307")
        elif path == "/to":
            self.send(302, Location=query["location"])
        elif path == "/loop":
            self.send(302, Location="/loop")
        elif path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            chunk = b"x" * 65536
            with contextlib.suppress(OSError):
                for _ in range(BIG // len(chunk)):
                    self.wfile.write(chunk)
        elif path == "/gzip-bomb":
            self.send(200, gzip.compress(b"\0" * 8_000_000), Content_Encoding="gzip")
        elif path == "/gzip":
            self.send(200, gzip.compress(b"hello " * 100), Content_Encoding="gzip")
        elif path == "/latin1":
            self.send(200, "café".encode("latin-1"), Content_Type="text/plain; charset=ISO-8859-1")
        else:
            self.send(404, b"not found")


class Server(ThreadingHTTPServer):
    block_on_close = False
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict] = []
        self.connections = 0
        self.sni: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        return True

    @property
    def port(self) -> int:
        return self.server_address[1]


@contextlib.contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server(tls)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    with serving() as s:
        yield s


@pytest.fixture
def other_server() -> Iterator[Server]:
    with serving() as s:
        yield s


class Recording(httpx.AsyncBaseTransport):
    """A real transport that remembers every URL it was asked to connect to."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.urls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def assert_not_chained(exc: BaseException) -> None:
    """The httpx exception (whose request may hold auth headers) is not shown with ours."""
    shown = "".join(traceback.format_exception(exc))
    assert exc.__cause__ is None
    assert "During handling" not in shown and "direct cause" not in shown


def fake_resolver(monkeypatch, table: dict[str, list[str]]) -> list[str]:
    """Replace DNS: ``table`` maps a host name to its addresses. Returns the names asked."""
    asked: list[str] = []

    async def resolve(host: str, port: int):
        asked.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in table[host]]

    monkeypatch.setattr(outbound, "resolve", resolve)
    return asked


# -- Allowlist ------------------------------------------------------------------------------


def test_allowlist_parse_hosts_wildcards_networks_and_addresses():
    allow = Allowlist.parse(
        [" Internal.Corp ", "*.corp", "10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8", "", "x.io."]
    )
    assert allow.hosts == frozenset({"internal.corp", "*.corp", "x.io"})
    assert allow.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert allow.permits_host("internal.corp")
    assert allow.permits_host("INTERNAL.corp.")
    assert allow.permits_host("a.corp") and allow.permits_host("a.b.corp")
    assert not allow.permits_host("corp")  # a wildcard matches subdomains only
    assert not allow.permits_host("internal.corp.evil.com")
    assert not allow.permits_host("evilcorp")
    assert allow.permits_address("10.200.3.4")
    assert allow.permits_address(ipaddress.ip_address("127.0.0.1"))
    assert not allow.permits_address("127.0.0.2")
    assert allow.permits_address("::1") and allow.permits_address("fd12::1")
    assert allow.permits_address("::ffff:10.0.0.1")  # the IPv4-mapped form of 10.0.0.1
    assert not allow.permits_address("192.168.0.1")


def test_allowlist_empty():
    allow = Allowlist.parse([])
    assert not allow
    assert not allow.permits_host("localhost")
    assert not allow.permits_address("127.0.0.1")


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/33", "10.1.2.3/8", "999.1.1.1", "1.2.3", "host:80", "*", "a..b", "-a.b"]
)
def test_allowlist_bad_entry_is_named(entry):
    with pytest.raises(ValueError, match="AETHER_OUTBOUND_ALLOWLIST") as info:
        Allowlist.parse(["ok.example", entry])
    assert repr(entry) in str(info.value)


# -- address_refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "::",
        "ff02::1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 for 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 for 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 for 10.0.0.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_non_global_addresses_are_refused(address):
    assert address_refused(address)
    assert address_refused(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_global_addresses_are_not_refused(address):
    assert not address_refused(address)


# -- schemes and hosts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://ftp.example.com/x",
        "gopher://127.0.0.1:70/_x",
        "http:///path",
        "http://",
        "not a url",
        "//example.com/x",
    ],
)
def test_refuses_other_schemes_and_urls_without_host(url, monkeypatch):
    asked = fake_resolver(monkeypatch, {})
    with pytest.raises(OutboundRefused, match=r"^refused: "):
        run(request("GET", url, allowlist=Allowlist.parse(["0.0.0.0/0", "::/0"])))
    assert asked == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1"])
def test_refuses_loopback_without_ever_connecting(server, host):
    with pytest.raises(OutboundRefused, match="loopback address") as info:
        run(request("GET", f"http://user:s3cret@{host}:{server.port}/echo?token=abc"))
    message = str(info.value)
    assert "AETHER_OUTBOUND_ALLOWLIST" in message
    assert "s3cret" not in message and "abc" not in message
    assert server.connections == 0
    assert server.seen == []


def test_refusal_message_names_the_address():
    with pytest.raises(OutboundRefused) as info:
        run(request("GET", "http://127.0.0.1:1/"))
    assert str(info.value) == (
        "refused: 127.0.0.1 is a loopback address; add it to AETHER_OUTBOUND_ALLOWLIST to allow it"
    )
    with pytest.raises(OutboundRefused, match=r"169\.254\.169\.254 is a link-local address"):
        run(request("GET", "http://169.254.169.254/latest/meta-data"))


def test_content_and_json_body_are_exclusive():
    with pytest.raises(ValueError):
        run(request("POST", "http://127.0.0.1/", content=b"x", json_body={}))


# -- requests to an allowed server ----------------------------------------------------------


def test_get_with_params_and_headers(server):
    response = run(
        request(
            "GET",
            f"http://127.0.0.1:{server.port}/echo?a=1",
            params={"b": "two words"},
            headers={"X-Custom": "yes", "Authorization": "Bearer t"},
            allowlist=LOOPBACK,
        )
    )
    assert response.status == 200
    assert response.truncated is False
    assert response.url == f"http://127.0.0.1:{server.port}/echo?a=1&b=two+words"
    assert response.headers["content-type"] == "application/json"
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["query"] == {"a": "1", "b": "two words"}
    assert seen["headers"]["x-custom"] == "yes"
    assert seen["headers"]["authorization"] == "Bearer t"
    assert seen["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert server.seen == [seen]


def test_post_json_body(server):
    response = run(
        request(
            "POST",
            f"http://127.0.0.1:{server.port}/echo",
            json_body={"q": "ünï", "n": [1, 2]},
            allowlist=LOOPBACK,
        )
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert json.loads(seen["body"]) == {"q": "ünï", "n": [1, 2]}
    assert seen["headers"]["content-type"] == "application/json"


def test_post_raw_content_and_a_404(server):
    response = run(
        request(
            "PUT",
            f"http://127.0.0.1:{server.port}/nowhere",
            content=b"raw",
            headers={"Content-Type": "text/plain"},
            allowlist=LOOPBACK,
        )
    )
    assert response.status == 404
    assert response.text() == "not found"
    assert server.seen[0]["body"] == "raw"
    with pytest.raises(ValueError):
        response.json()


def test_allowlisted_by_host_name(server):
    allow = Allowlist.parse(["*.x", "localhost"])
    response = run(request("GET", f"http://localhost:{server.port}/echo", allowlist=allow))
    assert response.json()["headers"]["host"] == f"localhost:{server.port}"


# -- redirects ------------------------------------------------------------------------------


def test_follows_a_relative_301(server):
    response = run(request("GET", f"http://127.0.0.1:{server.port}/r301", allowlist=LOOPBACK))
    assert response.status == 200
    assert response.url == f"http://127.0.0.1:{server.port}/echo?via=301"
    assert [s["path"] for s in server.seen] == ["/r301", "/echo"]


@pytest.mark.parametrize("path", ["/r303", "/r301"])
def test_303_and_301_turn_a_post_into_a_get_without_body(server, path):
    response = run(
        request(
            "POST",
            f"http://127.0.0.1:{server.port}{path}",
            json_body={"a": 1},
            allowlist=LOOPBACK,
        )
    )
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["body"] == ""
    assert "content-type" not in seen["headers"]
    assert seen["query"] == {"via": path[2:]}
    assert server.seen[0]["method"] == "POST"


def test_307_keeps_method_and_body(server):
    response = run(
        request("POST", f"http://127.0.0.1:{server.port}/r307", content=b"keep", allowlist=LOOPBACK)
    )
    seen = response.json()
    assert (seen["method"], seen["body"]) == ("POST", "keep")


def test_no_configured_header_follows_a_redirect_to_another_origin(server, other_server):
    """Any header may carry a credential (``X-Api-Key``, ``Private-Token`` …): none of those
    the caller set reaches another origin (issue 13, break 10)."""
    target = f"http://127.0.0.1:{other_server.port}/echo"
    configured = {
        "Authorization": "Bearer secret",
        "Cookie": "c=1",
        "X-Api-Key": "write-only",
        "Private-Token": "gitlab",
        "X-Other": "dropped too",
    }
    response = run(
        request(
            "GET",
            f"http://127.0.0.1:{server.port}/to",
            params={"location": target},
            headers=configured,
            allowlist=LOOPBACK,
        )
    )
    seen = response.json()
    assert not {name.lower() for name in configured} & set(seen["headers"]), seen["headers"]
    assert seen["headers"]["host"] == f"127.0.0.1:{other_server.port}"
    assert server.seen[0]["headers"]["authorization"] == "Bearer secret"
    assert server.seen[0]["headers"]["x-api-key"] == "write-only"


def test_configured_headers_follow_a_redirect_within_the_origin(server):
    response = run(
        request(
            "GET",
            f"http://127.0.0.1:{server.port}/to",
            params={"location": "/echo"},
            headers={"X-Api-Key": "write-only"},
            allowlist=LOOPBACK,
        )
    )
    assert response.json()["headers"]["x-api-key"] == "write-only"


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.1:8080/admin",
        "file:///etc/passwd",
    ],
)
def test_a_redirect_into_a_refused_address_is_refused(server, location):
    transport = Recording()
    with pytest.raises(OutboundRefused, match=r"^refused: "):
        run(
            request(
                "GET",
                f"http://127.0.0.1:{server.port}/to",
                params={"location": location},
                allowlist=LOOPBACK,
                transport=transport,
            )
        )
    assert len(transport.urls) == 1  # only the first hop ever reached a transport
    assert len(server.seen) == 1


def test_too_many_redirects(server):
    with pytest.raises(OutboundRefused, match="more than 3 redirects"):
        run(
            request(
                "GET", f"http://127.0.0.1:{server.port}/loop", allowlist=LOOPBACK, max_redirects=3
            )
        )
    assert len(server.seen) == 4
    # max_redirects=0 refuses to follow any redirect.
    url = f"http://127.0.0.1:{server.port}/r301"
    with pytest.raises(OutboundRefused, match="more than 0 redirects"):
        run(request("GET", url, allowlist=LOOPBACK, max_redirects=0))


# -- size limits ----------------------------------------------------------------------------


def test_body_is_cut_at_max_bytes(server):
    response = run(
        request("GET", f"http://127.0.0.1:{server.port}/big", max_bytes=1000, allowlist=LOOPBACK)
    )
    assert response.status == 200
    assert response.body == b"x" * 1000
    assert response.truncated is True


def test_exactly_max_bytes_is_not_truncated(server):
    response = run(
        request("GET", f"http://127.0.0.1:{server.port}/latin1", max_bytes=4, allowlist=LOOPBACK)
    )
    assert (response.body, response.truncated) == ("café".encode("latin-1"), False)
    assert response.text() == "café"


def test_gzip_is_decoded_and_a_gzip_bomb_is_cut(server):
    small = run(request("GET", f"http://127.0.0.1:{server.port}/gzip", allowlist=LOOPBACK))
    assert small.body == b"hello " * 100
    assert "content-encoding" not in small.headers
    bomb = run(
        request(
            "GET", f"http://127.0.0.1:{server.port}/gzip-bomb", max_bytes=1000, allowlist=LOOPBACK
        )
    )
    assert bomb.body == b"\0" * 1000
    assert bomb.truncated is True


# -- failures -------------------------------------------------------------------------------


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody ever answers
        port = silent.getsockname()[1]
        with pytest.raises(OutboundFailed) as info:
            run(request("GET", f"http://127.0.0.1:{port}/", timeout=0.5, allowlist=LOOPBACK))
    assert info.value.timeout is True
    assert_not_chained(info.value)


def test_a_closed_port_fails():
    with refusing_port() as port, pytest.raises(OutboundFailed) as info:
        run(request("GET", f"http://127.0.0.1:{port}/", allowlist=LOOPBACK))
    assert info.value.timeout is False
    assert_not_chained(info.value)
    assert str(info.value).startswith("could not connect to 127.0.0.1")


def test_an_unresolvable_name_fails(monkeypatch):
    fake_resolver(monkeypatch, {})
    with pytest.raises(OutboundFailed, match=r"could not resolve nowhere\.invalid") as info:
        run(request("GET", "https://nowhere.invalid/"))
    assert info.value.timeout is False


# -- DNS rebinding --------------------------------------------------------------------------


def test_a_name_resolving_to_loopback_is_refused(server, monkeypatch):
    fake_resolver(monkeypatch, {"evil.example": ["127.0.0.1"]})
    with pytest.raises(OutboundRefused) as info:
        run(request("GET", f"http://evil.example:{server.port}/echo"))
    assert str(info.value) == (
        "refused: evil.example resolves to 127.0.0.1, which is a loopback address; "
        "add it to AETHER_OUTBOUND_ALLOWLIST to allow it"
    )
    assert server.connections == 0


def test_one_refused_address_among_several_refuses(server, monkeypatch):
    fake_resolver(monkeypatch, {"mixed.example": ["8.8.8.8", "10.0.0.7"]})
    with pytest.raises(OutboundRefused, match=r"10\.0\.0\.7, which is a private address"):
        run(request("GET", "http://mixed.example/"))


def test_connects_to_the_checked_address_with_the_original_host(server, monkeypatch):
    asked = fake_resolver(monkeypatch, {"evil.example": ["127.0.0.1"]})
    transport = Recording()
    response = run(
        request(
            "GET",
            f"http://evil.example:{server.port}/echo",
            allowlist=Allowlist.parse(["127.0.0.0/8"]),
            transport=transport,
        )
    )
    assert response.json()["headers"]["host"] == f"evil.example:{server.port}"
    assert response.url == f"http://evil.example:{server.port}/echo"
    assert transport.urls == [f"http://127.0.0.1:{server.port}/echo"]
    assert asked == ["evil.example"]  # resolved once, then never by name again


def test_a_redirect_is_resolved_again(server, monkeypatch):
    asked = fake_resolver(
        monkeypatch, {"evil.example": ["127.0.0.1"], "rebind.example": ["169.254.169.254"]}
    )
    with pytest.raises(OutboundRefused, match=r"rebind\.example resolves to 169\.254\.169\.254"):
        run(
            request(
                "GET",
                f"http://evil.example:{server.port}/to",
                params={"location": "http://rebind.example/latest/meta-data"},
                allowlist=Allowlist.parse(["127.0.0.0/8"]),
            )
        )
    assert asked == ["evil.example", "rebind.example"]


# -- HTTPS: SNI and certificate verification use the original host name ---------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a certificate for evil.example, client context trusting its CA)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil.example")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client_context = ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode()
    )
    return server_context, client_context


@pytest.fixture
def tls_server(tls, monkeypatch) -> Iterator[Server]:
    server_context, client_context = tls
    monkeypatch.setattr(outbound, "_tls_context", lambda: client_context)
    with serving(server_context) as s:
        yield s


def test_https_uses_the_host_name_for_sni_and_verification(tls_server, monkeypatch):
    fake_resolver(monkeypatch, {"evil.example": ["127.0.0.1"]})
    response = run(
        request(
            "GET",
            f"https://evil.example:{tls_server.port}/echo",
            allowlist=Allowlist.parse(["127.0.0.1"]),
        )
    )
    assert response.status == 200
    assert response.json()["headers"]["host"] == f"evil.example:{tls_server.port}"
    assert tls_server.sni == ["evil.example"]


def test_https_certificate_for_another_name_fails(tls_server, monkeypatch):
    fake_resolver(monkeypatch, {"other.example": ["127.0.0.1"]})
    with pytest.raises(OutboundFailed) as info:
        run(
            request(
                "GET",
                f"https://other.example:{tls_server.port}/echo",
                allowlist=Allowlist.parse(["127.0.0.1"]),
            )
        )
    assert info.value.timeout is False
    assert "certificate" in str(info.value).lower()
    assert_not_chained(info.value)
    assert tls_server.seen == []


def test_https_to_a_literal_address_is_checked_against_the_address(tls_server):
    with pytest.raises(OutboundFailed, match=r"(?i)certificate"):
        run(request("GET", f"https://127.0.0.1:{tls_server.port}/echo", allowlist=LOOPBACK))


# -- OutboundResponse -----------------------------------------------------------------------


def test_response_text_and_json():
    def make(body: bytes, content_type: str | None = None) -> OutboundResponse:
        headers = {"content-type": content_type} if content_type else {}
        return OutboundResponse(200, headers, body, False, "http://x/")

    assert make("é".encode("latin-1"), "text/plain; charset=latin-1").text() == "é"
    assert make("é".encode()).text() == "é"
    assert make(b"\xff", "text/plain; charset=no-such-charset").text() == "\ufffd"
    assert make(b'{"a": 1}', "application/json").json() == {"a": 1}
    with pytest.raises(ValueError):
        make(b"<html>").json()
    with pytest.raises(ValueError):
        make(b"\xff\xfe\x00").json()
