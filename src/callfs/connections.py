"""The limits uvicorn leaves out, held per HTTP connection.

uvicorn closes a keep-alive connection left idle after a response, but it holds a
connection that never sends a request, sends its headers a byte at a time, stalls
its body or stops reading its download for as long as the client likes, and
httptools buffers headers of any size. :func:`guarded` gives the httptools
protocol those limits:

- ``idle``: a connection that is between requests (new ones included) closes after
  ``idle`` seconds without a byte;
- ``read``: once a request's first byte is in, its request line and headers must be
  whole within ``read`` seconds, and its body may go ``read`` seconds without a
  byte (time when reading is paused because the app has not taken the body yet does
  not count);
- ``write``: a response the client leaves unread for ``write`` seconds (the
  connection's send buffer stays full) is cut off;
- ``max_header_bytes``: a request line and headers larger than that answer 431
  with API.md's JSON error, and the connection closes.

A connection cut off by a timeout is closed without an answer: the client is not
reading one, or the request is incomplete; an upload cut off keeps the file's old
content, as any broken-off upload does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from callfs.web import SECURITY_HEADERS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Seconds and bytes a client is granted (see the module's docstring)."""

    idle: float
    read: float
    write: float
    max_header_bytes: int


def guarded(limits: Limits) -> type[HttpToolsProtocol]:
    """The httptools protocol class of uvicorn, holding every connection to ``limits``."""
    return type("LimitedHttpToolsProtocol", (LimitedProtocol,), {"limits": limits})


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines and a header size limit.

    One deadline at a time guards reading: ``idle`` between requests, ``read`` while a
    request's headers or body arrive. Another guards writing while the transport has
    asked to pause it.
    """

    limits: ClassVar[Limits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading: asyncio.TimerHandle | None = None
        self._writing: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._in_body = False
        self._header_bytes = 0
        self._header_size = 0
        self._began = False
        self._refused = False

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline(self.limits.idle, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_reading()
        self._cancel_writing()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._began = False
        super().data_received(data)
        if self._in_headers and not self._refused and not self._began:
            # Still no end of headers: all of this request so far is headers. (A chunk
            # that began the request may end another one: it is counted exactly, by the
            # parser's callbacks, once the headers are whole.)
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse_headers()

    # Reading: the parser's callbacks mark where a request is

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._began = True, True
        self._header_bytes = self._header_size = 0
        self._read_deadline(self.limits.read, "headers")

    def on_url(self, url: bytes) -> None:
        self._header_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._refused or self._header_size > self.limits.max_header_bytes:
            self._refuse_headers()
            return
        super().on_headers_complete()
        self._in_body = True
        self._read_deadline(self.limits.read, "body")

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)
        self._read_deadline(self.limits.read, "body")

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_body = False
        self._cancel_reading()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_headers and not self._in_body and not self.transport.is_closing():
            # Between requests: uvicorn's keep-alive timer runs too, with the same idle.
            self._read_deadline(self.limits.idle, "idle")

    def _read_deadline(self, seconds: float, phase: str) -> None:
        self._cancel_reading()
        self._reading = self.loop.call_later(seconds, self._read_expired, seconds, phase)

    def _cancel_reading(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None

    def _read_expired(self, seconds: float, phase: str) -> None:
        self._reading = None
        if self.transport.is_closing():
            return
        if phase == "idle" and self.cycle is not None and not self.cycle.response_complete:
            # A response is still on its way out: the write deadline watches it.
            return
        if phase == "body" and self.flow.read_paused:
            # Reading is paused because the app has not taken the body yet: not the client.
            self._read_deadline(seconds, phase)
            return
        logger.debug("closing %s: no %s within %.0fs", _peer(self.client), phase, seconds)
        self.transport.close()

    # Writing

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._writing is None:
            self._writing = self.loop.call_later(self.limits.write, self._write_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_writing()

    def _cancel_writing(self) -> None:
        if self._writing is not None:
            self._writing.cancel()
            self._writing = None

    def _write_expired(self) -> None:
        self._writing = None
        logger.debug(
            "cutting off %s: its response went unread for %.0fs",
            _peer(self.client),
            self.limits.write,
        )
        # close() would wait for the unread buffer to drain: it never would.
        self.transport.abort()

    # Refusing

    def _refuse_headers(self) -> None:
        """Answer 431 with API.md's JSON error and close, reading nothing more."""
        if self._refused:
            return
        self._refused = True
        self._in_headers = False
        self._cancel_reading()
        limit = self.limits.max_header_bytes
        body = json.dumps(
            {"code": "BAD_REQUEST", "message": f"request headers exceed {limit} bytes"}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", uuid.uuid4().hex.encode()),
            *SECURITY_HEADERS,
        ]
        head = b"HTTP/1.1 431 Request Header Fields Too Large\r\n" + b"".join(
            name + b": " + value + b"\r\n" for name, value in headers
        )
        self.transport.write(head + b"\r\n" + body)
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"
