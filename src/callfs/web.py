"""The HTTP layer every CallFS web role shares: error JSON, request ids, security headers,
request metrics and the access log.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callfs import logs
from callfs.addresses import TrustedProxies
from callfs.errors import (
    BackendUnavailable,
    BadRequest,
    CallFSError,
    RangeNotSatisfiable,
    RateLimitExceeded,
)
from callfs.metrics import Metrics

logger = logging.getLogger(__name__)

CSP = b"content-security-policy"
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (CSP, b"default-src 'none'; frame-ancestors 'none'"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "AUTHENTICATION_FAILED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",  # only routing raises these: no such endpoint, not no such file
    409: "FILE_ALREADY_EXISTS",
    412: "PRECONDITION_FAILED",
    413: "PAYLOAD_TOO_LARGE",
    416: "RANGE_NOT_SATISFIABLE",
    429: "RATE_LIMIT_EXCEEDED",
    503: "BACKEND_UNAVAILABLE",
}


async def json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a flat JSON object of at most ``limit`` bytes, else ``BadRequest``.

    Flat: UTF-8 without a BOM, and no value is itself an object or an array. A
    declared ``Content-Length`` over the limit is refused before any byte is read.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the JSON body must be at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the JSON body must be at most {limit} bytes")
    try:
        # Decoded here, not by json.loads: given bytes it also takes UTF-16, UTF-32 and a BOM.
        text = body.decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        raise BadRequest("the body must be UTF-8 JSON") from None
    except (ValueError, RecursionError):
        # json.loads recurses once per nesting level: a deep body ends here, not in a 500.
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    if any(isinstance(value, dict | list) for value in data.values()):
        raise BadRequest("the body must be a flat JSON object: no objects or arrays inside")
    return data


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    """API.md's error body: ``{"code": ..., "message": ...}``."""
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def response_for(exc: CallFSError) -> JSONResponse:
    """The response for a domain error: its status, code and message, never internals."""
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitExceeded):
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    if isinstance(exc, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="callfs"'
    return error_response(exc.status_code, exc.code, exc.message, **headers)


def domain_error_response(
    exc: CallFSError, metrics: Metrics, component: str, method: str, path: str
) -> JSONResponse:
    """The answer to a domain error, counted and (when it is the server's) logged."""
    metrics.errors.labels(component, exc.code).inc()
    if isinstance(exc, BackendUnavailable):
        # What failed logs its outage once; a line per refused request would bury it.
        logger.debug("%s %s: %s", method, path, exc.message)
    elif exc.status_code >= 500:
        logger.warning("%s %s: %s", method, path, exc.message)
    return response_for(exc)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """The answer to an HTTP-level refusal (routing's 404 is "no such endpoint")."""
    code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = "no such endpoint"
    return error_response(exc.status_code, code, message, **(exc.headers or {}))


def disconnected_response(method: str, path: str) -> Response:
    """What a request whose client went away mid-body gets (nobody reads it)."""
    logger.info("client disconnected during %s %s", method, path)
    return Response(status_code=499)


def internal_error_response(
    exc: BaseException, metrics: Metrics, component: str, method: str, path: str
) -> JSONResponse:
    """The 500 for an unexpected exception: counted and logged, internals kept out."""
    metrics.errors.labels(component, "INTERNAL_ERROR").inc()
    logger.error("unhandled error in %s %s", method, path, exc_info=exc)
    return error_response(500, "INTERNAL_ERROR", "internal error")


def install_error_handlers(app: FastAPI, metrics: Metrics, component: str) -> None:
    """Map every exception to API.md's JSON error; a 500 never carries internals."""

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CallFSError)
        return domain_error_response(exc, metrics, component, request.method, request.url.path)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        metrics.errors.labels(component, "BAD_REQUEST").inc()
        return error_response(
            400, "BAD_REQUEST", f"invalid {where}: {first.get('msg', 'bad value')}"
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return http_error_response(exc)

    async def disconnected(request: Request, exc: Exception) -> Response:
        return disconnected_response(request.method, request.url.path)

    async def unexpected(request: Request, exc: Exception) -> Response:
        return internal_error_response(exc, metrics, component, request.method, request.url.path)

    app.add_exception_handler(CallFSError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(Exception, unexpected)


USER_KEY = "callfs.user"
"""The scope key under which authentication leaves the caller's name for the access log."""
PATH_KEY = "callfs.path"
"""The scope key under which a route leaves the path it serves (as the metadata names it)."""


class EdgeMiddleware:
    """Request id, security headers, request metrics and the access log, on every response.

    A response that sets its own ``Content-Security-Policy`` (``/docs``) keeps it, alone:
    the API's strict one is added to every other. The access log's client address is the
    peer's, or what ``proxies`` (when trusted) say in ``X-Forwarded-For``; its body byte
    counts are taken only while the access log is on.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, proxies: TrustedProxies | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = logs.acceptable_request_id(_header(scope, b"x-request-id")) or uuid.uuid4().hex
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        status = 500
        extra = [(b"x-request-id", rid.encode()), *SECURITY_HEADERS]
        if scope.get("scheme") == "https":
            extra.append(HSTS)
        counting = logs.access.enabled
        bytes_in = bytes_out = 0
        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_duration.labels(method, route).observe(elapsed)
            if counting:
                logs.access.write(
                    method,
                    route,
                    status,
                    elapsed,
                    rid,
                    path=scope.get(PATH_KEY),
                    user=scope.get(USER_KEY),
                    client=self._client(scope),
                    bytes_in=bytes_in,
                    bytes_out=bytes_out,
                )

        async def counted_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
                own = message.get("headers", [])
                if any(name == CSP for name, _ in own):
                    message["headers"] = [*own, *(item for item in extra if item[0] != CSP)]
                else:
                    message["headers"] = [*own, *extra]
            elif message["type"] == "http.response.body":
                if counting:
                    bytes_out += len(message.get("body", b""))
                if not message.get("more_body", False):
                    # Counted before the last byte leaves: a client that has its answer
                    # and then scrapes /metrics finds it there.
                    record()
            await send(message)

        try:
            await self.app(scope, counted_receive if counting else receive, send_with_headers)
        finally:
            # No last body went through us: a response cut off (a 500 for an unhandled
            # exception is sent from inside, through send_with_headers).
            record()
            logs.request_id.reset(token)

    def _client(self, scope: Scope) -> str | None:
        """The client's address: the peer's, or the one trusted proxies forwarded for."""
        peer = scope.get("client")
        host: str | None = peer[0] if peer else None
        if self.proxies is None or host is None:
            return host
        forwarded = [
            value.decode("latin-1") for key, value in scope["headers"] if key == b"x-forwarded-for"
        ]
        return self.proxies.client(host, forwarded)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def route_template(scope: Scope) -> str:
    """The route a request matched (``/v1/files/{path:path}``), else ``unmatched``."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
