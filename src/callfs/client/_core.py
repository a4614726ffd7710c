"""What the sync and async clients share: URLs, headers, bodies, retries and error answers.

Nothing here performs I/O on the network; :mod:`callfs.client._sync` and
:mod:`callfs.client._async` send what this module describes.
"""

from __future__ import annotations

import io
import json
import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable
from urllib.parse import quote

import httpx

from callfs import __version__
from callfs.client.errors import ClientError, TransportError, error_for, retry_after

USER_AGENT = f"callfs-python/{__version__}"
DEFAULT_CHUNK_SIZE = 1024 * 1024
"""Upload chunks and default download chunks: the server's own streaming chunk (1 MiB)."""
DEFAULT_PAGE_SIZE = 1000
"""Entries per listing request when ``page_size`` is not given."""
MAX_ERROR_BODY = 64 * 1024

FILES = "/v1/files/"
DIRECTORIES = "/v1/directories/"
LINKS = "/v1/links/generate"
DOWNLOAD = "/download/"

RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.NetworkError,  # ConnectError, ReadError, WriteError, CloseError
    httpx.TimeoutException,  # ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout
    httpx.RemoteProtocolError,  # the server closed the connection without an answer
)
"""Failures after which an idempotent request is sent again."""

Range = tuple[int, int] | int
"""``(start, end)`` inclusive, ``start`` (to the end of the file), or ``-n`` (the last n bytes)."""


@dataclass(frozen=True)
class Retry:
    """When and how often an idempotent request is sent again.

    Retried: ``GET``, ``HEAD``, ``DELETE`` and a ``PUT`` whose body is bytes, after a
    connection failure (refused, reset, timed out, closed without an answer) or an
    answer whose status is in ``statuses`` (503 ``BACKEND_UNAVAILABLE``: nothing was
    changed). Never retried: ``POST``, ``PATCH``, a ``PUT`` streamed from a file or an
    iterator (its body cannot be replayed), single-use link downloads.

    The n-th retry (n = 0, 1, …) waits ``min(backoff_max, backoff_factor * 2**n)``
    seconds, or the answer's ``Retry-After`` when longer (still capped).
    """

    total: int = 3
    """Retries after the first attempt (0: never retry)."""
    backoff_factor: float = 0.2
    backoff_max: float = 10.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({503}))

    def __post_init__(self) -> None:
        if self.total < 0 or self.backoff_factor < 0 or self.backoff_max < 0:
            raise ValueError("Retry values must not be negative")

    def delay(self, attempt: int, after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        wait = self.backoff_factor * 2.0**attempt
        if after is not None:
            wait = max(wait, after)
        return min(self.backoff_max, wait)

    @classmethod
    def of(cls, value: int | Retry | None) -> Retry:
        if value is None:
            return cls(total=0)
        if isinstance(value, Retry):
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("retries must be an int or a Retry")
        return cls(total=value)


@dataclass(frozen=True)
class Call:
    """One request as the clients send it (built again for each attempt)."""

    method: str
    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    content: Any = None
    json: Any = None
    idempotent: bool = False
    """Whether it may be sent again after a failure (see :class:`Retry`)."""
    authenticated: bool = True
    retry_statuses: bool = True
    """Whether a status in :attr:`Retry.statuses` is retried (``/ready`` answers 503 as data)."""


# --- paths --------------------------------------------------------------------------


def encode_path(path: str) -> str:
    """``path`` as the rest of an API URL: each segment percent-encoded once.

    A leading ``/`` is optional and a trailing one kept (it names a directory). ``.``
    and ``..`` segments are sent encoded (``%2E``) so that no HTTP library resolves them
    on the way: the server refuses them with ``INVALID_PATH``, as it does empty segments.
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, got {type(path).__name__}")
    rest = path[1:] if path.startswith("/") else path
    return "/".join(_segment(segment) for segment in rest.split("/"))


def _segment(segment: str) -> str:
    if segment in (".", ".."):
        return "%2E" * len(segment)
    return quote(segment, safe="")


def files_url(path: str) -> str:
    return FILES + encode_path(path)


def directories_url(path: str) -> str:
    return DIRECTORIES + encode_path(path)


def canonical(path: str) -> str:
    """``path`` as the API names it: a leading ``/``, no trailing one."""
    return "/" + path.strip("/")


def as_directory(path: str) -> str:
    """``path`` with the trailing ``/`` that names a directory (``/`` for the root)."""
    target = canonical(path)
    return target if target == "/" else target + "/"


def parent(path: str) -> str:
    """The parent directory of ``path`` (``/`` for a top-level entry and for ``/``)."""
    return canonical(canonical(path).rsplit("/", 1)[0])


# --- headers ------------------------------------------------------------------------


def range_header(span: Range) -> str:
    """A ``Range`` header value.

    Raises:
        ValueError: a negative start, an end before the start, a zero suffix.
    """
    if isinstance(span, bool):
        raise TypeError("range must be (start, end), start or -suffix")
    if isinstance(span, int):
        if span < 0:
            return f"bytes={span}"  # "-n": the last n bytes
        return f"bytes={span}-"
    start, end = span
    if start < 0 or end < start:
        raise ValueError(f"range must satisfy 0 <= start <= end, got {span!r}")
    return f"bytes={start}-{end}"


def etag_header(etag: str) -> str:
    """An ``If-Match``/``If-None-Match`` value: ``*``, an ETag as the headers or the JSON
    spell it (quoted or bare), or several separated by commas."""
    values = []
    for value in etag.split(","):
        value = value.strip()
        if value == "*" or value.startswith(('"', "W/")):
            values.append(value)
        elif value:
            values.append(f'"{value}"')
    if not values:
        raise ValueError("empty etag")
    return ", ".join(values)


def verify_option(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx's ``verify``: a path is a CA bundle (file or directory)."""
    if isinstance(verify, str):
        if verify.lower() in ("true", "false"):
            return verify.lower() == "true"
        return ssl.create_default_context(
            cafile=verify if not verify.endswith("/") else None,
            capath=verify if verify.endswith("/") else None,
        )
    return verify


def timeout_option(timeout: float | httpx.Timeout) -> httpx.Timeout:
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


# --- bodies -------------------------------------------------------------------------


@runtime_checkable
class Readable(Protocol):
    """A binary file object (``open(..., "rb")``, ``io.BytesIO``, a socket file…)."""

    def read(self, size: int = -1, /) -> Any: ...


def is_bytes(data: object) -> bool:
    return isinstance(data, bytes | bytearray | memoryview)


def check_data(data: object) -> None:
    if isinstance(data, str):
        raise TypeError("write() takes bytes, a binary file or an iterator of bytes, not str")


def remaining_length(source: Readable) -> int | None:
    """How many bytes a seekable file has left to read (None when it cannot tell)."""
    if isinstance(source, io.TextIOBase):
        raise TypeError("write() takes a binary file: open it with 'rb'")
    seekable = getattr(source, "seekable", None)
    if not callable(seekable):
        return None
    try:
        if not seekable():
            return None
        here = source.tell()  # type: ignore[attr-defined]
        end = source.seek(0, io.SEEK_END)  # type: ignore[attr-defined]
        source.seek(here)  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return None
    return max(0, int(end) - int(here))


def chunk(value: object) -> bytes:
    """One upload chunk, checked: bytes-like only."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"upload chunks must be bytes, got {type(value).__name__}")


def file_chunks(source: Readable, size: int) -> Iterator[bytes]:
    """A binary file read ``size`` bytes at a time, never whole."""
    while True:
        data = chunk(source.read(size))
        if not data:
            return
        yield data


def iterable_chunks(source: Iterable[Any]) -> Iterator[bytes]:
    for value in source:
        data = chunk(value)
        if data:
            yield data


# --- answers ------------------------------------------------------------------------


BODILESS_CODES = frozenset({304, 429, 500, 503})
"""Statuses whose one possible code is known without a body (a 304, a HEAD's answer)."""


def probe_head_error(status: int) -> bool:
    """Whether a HEAD's error answer is asked again as a GET to learn its code: the 4xx
    statuses the API answers with several codes (400: INVALID_PATH, NOT_A_DIRECTORY…;
    404: FILE_NOT_FOUND or NOT_FOUND), never a 429 or a 5xx (no more load on a server
    that is overloaded or failing)."""
    return 400 <= status < 500 and status != 429


def error_from(response: httpx.Response, body: bytes) -> ClientError:
    """The exception an error answer stands for (its JSON ``code``, else its status)."""
    status = response.status_code
    code: str | None = None
    message: str | None = None
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            if isinstance(data.get("code"), str):
                code = data["code"]
            if isinstance(data.get("message"), str):
                message = data["message"]
    if message is None and status == 304:
        message = "not modified: the file's ETag matches If-None-Match"
    if message is None:
        text = body[:200].decode("utf-8", "replace").strip()
        message = f"HTTP {status} {response.reason_phrase}".rstrip() + (f": {text}" if text else "")
    if code is None and (body or status not in BODILESS_CODES):
        code = f"HTTP_{status}"  # not a CallFS error body: a proxy's page, a HEAD
    return error_for(
        status,
        code,
        message,
        request_id=response.headers.get("x-request-id"),
        headers=response.headers,
    )


def transport_error(exc: Exception, call: Call) -> TransportError:
    return TransportError(f"{call.method} {call.url}: {type(exc).__name__}: {exc}".rstrip(": "))


def retry_delay(retry: Retry, attempt: int, response: httpx.Response | None) -> float:
    after = retry_after(response.headers.get("retry-after")) if response is not None else None
    return retry.delay(attempt, after)


def json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise ClientError(
            f"expected JSON from {response.request.method} {response.request.url.path}",
            code="BAD_RESPONSE",
            status=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from exc
    if not isinstance(data, dict):
        raise ClientError(
            "expected a JSON object",
            code="BAD_RESPONSE",
            status=response.status_code,
            request_id=response.headers.get("x-request-id"),
        )
    return data


def listing_params(
    recursive: bool, max_depth: int | None, page_size: int | None, cursor: str | None
) -> dict[str, str]:
    size = DEFAULT_PAGE_SIZE if page_size is None else page_size
    if size < 1:
        raise ValueError("page_size must be at least 1")
    if max_depth is not None and (max_depth < 0 or not recursive):
        raise ValueError("max_depth must be >= 0, and needs recursive=True")
    params = {"limit": str(size)}
    if recursive:
        params["recursive"] = "true"
        if max_depth is not None:
            params["max_depth"] = str(max_depth)
    if cursor:
        params["cursor"] = cursor
    return params


def download_url(link: object) -> str:
    """A link's URL: a :class:`~callfs.client.Link`, an absolute URL, or a bare token."""
    url = getattr(link, "url", link)
    if not isinstance(url, str) or not url:
        raise TypeError("download() takes a Link, its URL or its token")
    if url.startswith(("http://", "https://")):
        return url
    return DOWNLOAD + quote(url, safe="")


def content_range(value: str | None) -> tuple[int, int, int] | None:
    """``Content-Range: bytes a-b/total`` as ``(a, b, total)``."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    start, _, end = span.partition("-")
    if not (start.isdigit() and end.isdigit() and total.isdigit()):
        return None
    return int(start), int(end), int(total)


class StreamInfo:
    """What a download's headers say, shared by :class:`ByteStream` and its async twin."""

    def __init__(self, response: httpx.Response) -> None:
        headers = response.headers
        self.status: int = response.status_code
        """200, or 206 for a range."""
        self.request_id: str | None = headers.get("x-request-id")
        etag = headers.get("etag")
        self.etag: str | None = etag.strip().removeprefix("W/").strip('"') if etag else None
        length = headers.get("content-length")
        self.length: int | None = int(length) if length and length.isdigit() else None
        """Bytes this answer carries (the range's length for a 206)."""
        self.content_range: tuple[int, int, int] | None = content_range(
            headers.get("content-range")
        )
        """``(start, end, total)`` of a 206 (inclusive), None otherwise."""
        size = headers.get("x-callfs-size")
        if self.content_range is not None:
            self.size: int | None = self.content_range[2]
        elif size and size.isdigit():
            self.size = int(size)
        else:
            self.size = self.length
        """The whole file's size."""
        self.headers: httpx.Headers = headers


class Reported:
    """A binary file whose reads are reported to ``on_read`` (the bytes each returned):
    an upload's progress. Seekable when the file is, so the SDK still sends its
    ``Content-Length``.
    """

    def __init__(self, file: IO[bytes], on_read: Callable[[int], object]) -> None:
        self._file = file
        self._on_read = on_read

    def read(self, size: int = -1, /) -> bytes:
        data = self._file.read(size)
        self._on_read(len(data))
        return data

    def seekable(self) -> bool:
        return self._file.seekable()

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)
