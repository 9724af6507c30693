"""The header-read timeout (hub.http.server): slow-header sockets are closed, requests that
finish their headers in time are served, on a first and on a kept-alive request."""

from __future__ import annotations

import json
import socket
import time

from hub import cli
from hub.core import metrics
from hub.http import server
from tests.servers import serve

TIMEOUT = 0.5


async def hello(scope, receive, send):
    assert scope["type"] == "http"
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (end of stream, nothing answered)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_slow_header_sockets_are_closed():
    before = metrics.HEADER_TIMEOUTS._value.get()
    with serve(hello, http=server.protocol(TIMEOUT)) as port:
        sockets = [_connect(port) for _ in range(200)]
        for i, sock in enumerate(sockets):
            if i % 2:  # half send part of the headers, half nothing at all
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert all(_closed(sock) for sock in sockets)
        for sock in sockets:
            sock.close()
    assert metrics.HEADER_TIMEOUTS._value.get() - before >= 200


def test_a_byte_at_a_time_does_not_extend_the_deadline():
    with serve(hello, http=server.protocol(TIMEOUT)) as port, _connect(port) as sock:
        sock.settimeout(0.05)
        closed = False
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Drip: " + b"a" * 400:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "400 bytes at 50 ms each outlived a 0.5 s header timeout"


def test_headers_in_time_are_served_and_kept_alive():
    with serve(hello, http=server.protocol(TIMEOUT)) as port, _connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(TIMEOUT / 5)
        sock.sendall(b"\r\n")
        assert sock.recv(4096).endswith(b"hello")
        # a second request on the same connection: its own deadline, from its first byte
        time.sleep(TIMEOUT * 1.5)  # idle between requests is the keep-alive timer's (5 s)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).endswith(b"hello")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never finished
        assert _closed(sock)


def test_a_request_the_parser_rejects_gets_a_problem():
    with serve(hello, http=server.protocol(TIMEOUT)) as port, _connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/problem+json" in head.lower()
    problem = json.loads(body)
    assert problem["status"] == 400 and problem["code"] == "bad_request"
    assert "malformed" in problem["detail"]


def test_aether_serve_uses_the_protocol(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("AETHER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AETHER_HEADER_TIMEOUT_SECONDS", "3.5")
    monkeypatch.setenv("AETHER_ADMIN_TOKEN", "t" * 32)
    assert cli.main(["serve", "--port", "1"]) == 0
    assert issubclass(seen["http"], server.HeaderTimeoutProtocol)
    assert seen["http"].header_timeout == 3.5
