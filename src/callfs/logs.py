"""Logging, configured once at the entry: JSON or console lines carrying the request id."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import orjson

NO_REQUEST = "-"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default=NO_REQUEST)
"""The id of the request being served (``-`` outside one): set by the edge middleware,
sent to storage nodes as ``x-request-id`` and set there from it."""

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def acceptable_request_id(value: str | None) -> str | None:
    """``value`` if it may serve as a request id (1-128 safe characters), else None."""
    return value if value and _REQUEST_ID.match(value) else None


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (``request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "json") -> None:
    """Route every logger (ours, uvicorn's, grpc's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access.configure(
        sys.stderr if logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO) else None,
        fmt,
    )
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # The access log is ours (one line per request with its id); uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request it makes at INFO: a server's own calls (a worker's metrics
    # scraped, callfs.workers) are not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)


ACCESS_LOGGER = "callfs.access"


class AccessLog:
    """The one line per request, in the configured format, without a ``LogRecord``.

    At thousands of requests a second the logging module's per-record work (record,
    filter, formatter, a locked write and flush per line) was a sixth of a small GET's
    time on the event loop. A line here is one ``orjson.dumps`` of the fields (or one
    f-string); lines written during one turn of the event loop go out in one write at
    its end (at once when no loop runs). Off until :func:`configure` turns it on, as
    logging is; callers check :attr:`enabled` before gathering a line's fields.
    """

    def __init__(self) -> None:
        self._stream: TextIO | None = None
        self._json = True
        self._pending: list[str] = []
        self._second = -1
        self._stamp = ""
        self._iso_second = -1
        self._iso_stamp = ""

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def configure(self, stream: TextIO | None, fmt: str) -> None:
        """Write to ``stream`` (None: off) in ``fmt`` (``json`` or ``console``)."""
        self.flush()
        self._stream = stream
        self._json = fmt == "json"

    def write(
        self,
        method: str,
        route: str,
        status: int,
        seconds: float,
        rid: str,
        *,
        path: str | None = None,
        user: str | None = None,
        client: str | None = None,
        bytes_in: int = 0,
        bytes_out: int = 0,
    ) -> None:
        """Log one answered request: ``GET /v1/files/{path:path} 200 0.4ms`` and its fields.

        ``path`` is the path the request named, as the metadata names it; ``user`` the
        authenticated caller; ``client`` its address; ``bytes_in``/``bytes_out`` the
        request and response body bytes. None: the request named no path, or no caller
        was authenticated.
        """
        if self._stream is None:
            return
        now = time.time()
        message = f"{method} {route} {status} {seconds * 1000:.1f}ms"
        if self._json:
            line = orjson.dumps(
                {
                    "time": self._isotime(now),
                    "level": "info",
                    "logger": ACCESS_LOGGER,
                    "request_id": rid,
                    "message": message,
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "bytes_in": bytes_in,
                    "bytes_out": bytes_out,
                    "user": user,
                    "client": client,
                }
            ).decode()
        else:
            line = (
                f"{self._asctime(now)} INFO    [{rid}] {ACCESS_LOGGER}: {message}"
                f" path={path or '-'} user={user or '-'} client={client or '-'}"
                f" in={bytes_in} out={bytes_out}"
            )
        self._pending.append(line)
        if len(self._pending) > 1:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        """Write out the lines held for this turn of the event loop."""
        if not self._pending or self._stream is None:
            self._pending.clear()
            return
        lines, self._pending = self._pending, []
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr loses log lines only
            pass

    def _asctime(self, now: float) -> str:
        """``logging``'s default time format (``2026-12-07 11:19:49,696``), cached per second."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def _isotime(self, now: float) -> str:
        """:class:`JsonFormatter`'s time (``2026-12-07T11:19:49.696+00:00``), cached per second."""
        second = int(now)
        if second != self._iso_second:
            self._iso_second = second
            self._iso_stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._iso_stamp}.{int((now - second) * 1000):03d}+00:00"


access = AccessLog()
