"""The HTTP/1.1 protocol uvicorn serves the hub with: uvicorn's httptools protocol plus a
header-read timeout, which uvicorn lacks (its keep-alive timer stops at a request's first
byte, so a client that sends its headers a byte at a time, or never finishes them, would
hold the socket for ever).

A request's line and headers must arrive within ``AETHER_HEADER_TIMEOUT_SECONDS`` of the
connection opening (or of the first byte of a later request on a kept-alive connection);
past that the connection is closed without an answer, as uvicorn does for an idle
keep-alive. Bodies are not covered: a slow body keeps its request's handler waiting, not
the server, and is bounded by the body limit.

A request the parser rejects (a malformed request line or header name) is answered with
uvicorn's 400, but as ``application/problem+json`` like every other error of the hub, not
uvicorn's ``text/plain``.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from hub.core import metrics, problems


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a later request on a kept-alive connection
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, as a problem (then closed)."""
        self._disarm_header_timer()
        body, media_type = problems.render(
            problems.BadRequest(f"{msg.rstrip('.')}: the request line or headers are malformed."),
            None,
            "",
        )
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + media_type.encode("ascii") + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            metrics.HEADER_TIMEOUTS.inc()
            self.transport.close()


def protocol(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to hand uvicorn (``http=``), with this timeout."""
    return type("HubHTTPProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout})
