"""The errors the CallFS SDK raises: one class per API error code, all under :class:`ClientError`.

The base is named ``ClientError`` — not ``CallFSError`` — because the server's own
domain errors live in :mod:`callfs.errors` under ``CallFSError``; the two families are
unrelated (a client never receives the server's classes), so they are kept apart by
name. Catch ``callfs.client.ClientError`` (or a subclass) around SDK calls::

    ClientError                     every SDK error: code, message, status, request_id
    ├── TransportError              no HTTP answer (connection refused/reset, timeout); status None
    ├── ConfigError                 no URL configured, a bad profile file
    ├── NotModified                 304: ``If-None-Match`` matched (read/stream)
    ├── BadRequest                  400 BAD_REQUEST (also 431)
    │   ├── InvalidPath             400 INVALID_PATH
    │   ├── NotADirectory           400 NOT_A_DIRECTORY
    │   └── IsADirectory            400 IS_A_DIRECTORY
    ├── Unauthorized                401 AUTHENTICATION_FAILED
    ├── PermissionDenied            403 PERMISSION_DENIED
    ├── NotFound                    404 FILE_NOT_FOUND
    │   └── EndpointNotFound        404 NOT_FOUND (no such endpoint: a wrong base URL?)
    ├── Conflict                    409
    │   ├── AlreadyExists           409 FILE_ALREADY_EXISTS
    │   └── DirectoryNotEmpty       409 DIRECTORY_NOT_EMPTY
    ├── Gone                        410
    │   ├── LinkExpired             410 LINK_EXPIRED
    │   └── LinkUsed                410 LINK_USED
    ├── PreconditionFailed          412 PRECONDITION_FAILED
    ├── PayloadTooLarge             413 PAYLOAD_TOO_LARGE
    ├── RangeNotSatisfiable         416 RANGE_NOT_SATISFIABLE (``size``: the file's size)
    ├── RateLimited                 429 RATE_LIMIT_EXCEEDED (``retry_after`` seconds)
    └── ServerError                 5xx
        ├── InternalError           500 INTERNAL_ERROR
        └── Unavailable             503 BACKEND_UNAVAILABLE

An answer whose code this table does not know is raised as the class of its status
family (a new 409 code is a :class:`Conflict`, a 502 from a proxy a
:class:`ServerError`), or as :class:`ClientError` itself, with ``code`` as sent.

This module imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = [
    "AlreadyExists",
    "BadRequest",
    "ClientError",
    "ConfigError",
    "Conflict",
    "DirectoryNotEmpty",
    "EndpointNotFound",
    "Gone",
    "InternalError",
    "InvalidPath",
    "IsADirectory",
    "LinkExpired",
    "LinkUsed",
    "NotADirectory",
    "NotFound",
    "NotModified",
    "PayloadTooLarge",
    "PermissionDenied",
    "PreconditionFailed",
    "RangeNotSatisfiable",
    "RateLimited",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "error_for",
]


class ClientError(Exception):
    """Base of every error the SDK raises.

    Attributes:
        code: the API's error code (``FILE_NOT_FOUND``…); for an answer without a JSON
            error body ``HTTP_<status>``; for errors without an answer a code of the
            SDK's own (``TRANSPORT_ERROR``, ``CONFIG_ERROR``).
        message: the server's message (or the SDK's).
        status: the HTTP status, None when there was no answer.
        request_id: the answer's ``X-Request-ID`` (quote it when reporting a problem).
    """

    default_code = "CLIENT_ERROR"
    default_status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status if status is not None else self.default_status
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        request = f" (request {self.request_id})" if self.request_id else ""
        return f"{where}{self.code}: {self.message}{request}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code!r}, "
            f"status={self.status!r}, request_id={self.request_id!r})"
        )


class TransportError(ClientError):
    """No HTTP answer: the connection was refused, reset or timed out (``__cause__`` is
    httpx's exception)."""

    default_code = "TRANSPORT_ERROR"


class ConfigError(ClientError):
    """The client could not be configured: no URL anywhere, an unknown profile, a bad file."""

    default_code = "CONFIG_ERROR"


class NotModified(ClientError):
    """304: the file's current ETag matches the ``if_none_match`` the caller sent."""

    default_code = "NOT_MODIFIED"
    default_status = 304

    def __init__(
        self,
        message: str,
        *,
        etag: str | None = None,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id)
        self.etag = etag


class BadRequest(ClientError):
    default_code = "BAD_REQUEST"
    default_status = 400


class InvalidPath(BadRequest):
    default_code = "INVALID_PATH"


class NotADirectory(BadRequest):
    default_code = "NOT_A_DIRECTORY"


class IsADirectory(BadRequest):
    default_code = "IS_A_DIRECTORY"


class Unauthorized(ClientError):
    default_code = "AUTHENTICATION_FAILED"
    default_status = 401


class PermissionDenied(ClientError):
    default_code = "PERMISSION_DENIED"
    default_status = 403


class NotFound(ClientError):
    default_code = "FILE_NOT_FOUND"
    default_status = 404


class EndpointNotFound(NotFound):
    """404 ``NOT_FOUND``: no such endpoint (as opposed to no such file) — usually a base
    URL that is not CallFS's."""

    default_code = "NOT_FOUND"


class Conflict(ClientError):
    default_code = "CONFLICT"
    default_status = 409


class AlreadyExists(Conflict):
    default_code = "FILE_ALREADY_EXISTS"


class DirectoryNotEmpty(Conflict):
    default_code = "DIRECTORY_NOT_EMPTY"


class Gone(ClientError):
    default_code = "GONE"
    default_status = 410


class LinkExpired(Gone):
    default_code = "LINK_EXPIRED"


class LinkUsed(Gone):
    default_code = "LINK_USED"


class PreconditionFailed(ClientError):
    default_code = "PRECONDITION_FAILED"
    default_status = 412


class PayloadTooLarge(ClientError):
    default_code = "PAYLOAD_TOO_LARGE"
    default_status = 413


class RangeNotSatisfiable(ClientError):
    """416; ``size`` is the file's size from ``Content-Range: bytes */<size>`` (None if absent)."""

    default_code = "RANGE_NOT_SATISFIABLE"
    default_status = 416

    def __init__(
        self,
        message: str,
        *,
        size: int | None = None,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id)
        self.size = size


class RateLimited(ClientError):
    """429; ``retry_after`` is the server's ``Retry-After`` in seconds (None if absent)."""

    default_code = "RATE_LIMIT_EXCEEDED"
    default_status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id)
        self.retry_after = retry_after


class ServerError(ClientError):
    default_code = "SERVER_ERROR"
    default_status = 500


class InternalError(ServerError):
    default_code = "INTERNAL_ERROR"


class Unavailable(ServerError):
    """503 ``BACKEND_UNAVAILABLE``: a storage node, the metadata store or a lock is
    unavailable; nothing was changed. Idempotent requests were already retried."""

    default_code = "BACKEND_UNAVAILABLE"
    default_status = 503


_BY_CODE: dict[str, type[ClientError]] = {
    cls.default_code: cls
    for cls in (
        BadRequest,
        InvalidPath,
        NotADirectory,
        IsADirectory,
        Unauthorized,
        PermissionDenied,
        NotFound,
        EndpointNotFound,
        AlreadyExists,
        DirectoryNotEmpty,
        LinkExpired,
        LinkUsed,
        PreconditionFailed,
        PayloadTooLarge,
        RangeNotSatisfiable,
        RateLimited,
        InternalError,
        Unavailable,
    )
}

_BY_STATUS: dict[int, type[ClientError]] = {
    304: NotModified,
    400: BadRequest,
    401: Unauthorized,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: Gone,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    416: RangeNotSatisfiable,
    429: RateLimited,
    431: BadRequest,
    500: InternalError,
    503: Unavailable,
}


def error_for(
    status: int,
    code: str | None,
    message: str,
    *,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ClientError:
    """The exception for an error answer: by its code, else by its status family.

    ``code`` is None when the answer carried no JSON error body (a HEAD, a proxy's
    page): the status then decides the class and the class's code is used.
    """
    headers = headers or {}
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ClientError
    if issubclass(cls, NotModified):
        etag = _unquote(headers.get("etag"))
        return cls(message, etag=etag, code=code, status=status, request_id=request_id)
    if issubclass(cls, RangeNotSatisfiable):
        size = _range_size(headers.get("content-range"))
        return cls(message, size=size, code=code, status=status, request_id=request_id)
    if issubclass(cls, RateLimited):
        after = retry_after(headers.get("retry-after"))
        return cls(message, retry_after=after, code=code, status=status, request_id=request_id)
    return cls(message, code=code, status=status, request_id=request_id)


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _range_size(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _unquote(etag: str | None) -> str | None:
    if etag is None:
        return None
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')
