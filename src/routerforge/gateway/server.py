"""The HTTP/1.1 protocol ``routerforge serve`` runs: uvicorn's httptools protocol with two limits it lacks.

uvicorn times out idle kept-alive connections (``timeout_keep_alive``: ``limits.idle_timeout_s``) but not a
client that sends its request line and headers slowly (slowloris), nor one that connects and sends
nothing, and httptools buffers header bytes without a bound. Here, from the connection's opening and from
the first byte of each request, the headers must be complete within ``limits.header_timeout_s`` (else 408
and the connection is closed) and hold at most ``limits.max_header_bytes`` (else 431, closed). The body is
the app's (``gateway/limits.py``: size cap and ``body_timeout_s``).

The limits come from the app's lifespan state (``LIMITS_STATE``), so every ``--workers`` process reads
its own gateway.yaml.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from routerforge.gateway.config import LimitsConfig
from routerforge.gateway.limits import LIMITS_STATE
from routerforge.gateway.schemas import error_body


def _response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps(error_body(message, "invalid_request_error", code=reason.lower().replace(" ", "_")))
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return (head + body).encode()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a header size cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.app_state.get(LIMITS_STATE)
        if not isinstance(limits, LimitsConfig):
            limits = LimitsConfig()
        self.header_timeout_s = limits.header_timeout_s
        self.max_header_bytes = limits.max_header_bytes
        self._in_headers = True  # until the first request's headers are complete
        self._header_bytes = 0
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Still reading headers after this chunk: every byte counted so far was a header byte.
        if self._in_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large", f"at most {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:  # a new request on a kept-alive connection
            self._in_headers = True
            self._header_bytes = 0
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _timed_out(self) -> None:
        self._header_deadline = None
        if self._in_headers and (self.cycle is None or self.cycle.response_complete):
            self._refuse(408, "Request Timeout", f"headers must arrive within {self.header_timeout_s:g} s")

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_response(status, reason, f"{reason}: request headers {detail}."))
            self.transport.close()
