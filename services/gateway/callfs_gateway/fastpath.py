"""The hot path for bytes: ``GET``, ``HEAD``, ``PUT`` and ``POST /v1/files/...``
answered in front of FastAPI.

Reading and writing files are the requests a gateway serves most, and for a small
file most of their cost used to be the framework: routing through every route, the
dependency graph, three layers of middleware. This ASGI layer sits just inside the
edge middleware (request id, security headers, metrics and the access log stay on
every request) and answers those requests itself with the code the routes run
(:func:`~callfs_gateway.api.answer_read`, :func:`~callfs_gateway.api.answer_create`,
:func:`~callfs_gateway.api.answer_replace`), the same authentication and the same
error answers. Everything else, and the OpenAPI document, stays with FastAPI.
"""

from __future__ import annotations

from types import SimpleNamespace

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callfs.errors import CallFSError
from callfs.runtime import Runtime
from callfs.web import (
    USER_KEY,
    disconnected_response,
    domain_error_response,
    http_error_response,
    internal_error_response,
)
from callfs_gateway.api import (
    FILES_PREFIX,
    answer_create,
    answer_read,
    answer_replace,
    request_path,
)
from callfs_gateway.filesystem import FileSystem

COMPONENT = "gateway"
METHODS = frozenset({"GET", "HEAD", "PUT", "POST"})
# What the edge middleware labels the request with: the route FastAPI would have matched.
FILE_ROUTE = SimpleNamespace(path="/v1/files/{path:path}")


class FilesFastPath:
    """Answers ``GET``/``HEAD``/``PUT``/``POST /v1/files/<path>`` for ``owner``; passes
    the rest to ``app``."""

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in METHODS
            or not scope["path"].startswith("/v1/files/")
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = FILE_ROUTE
        request = Request(scope, receive)
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            response = await self._answer(request)
            await response(scope, receive, tracked)
        except Exception as exc:
            failure = internal_error_response(
                exc, self.owner.state.metrics, COMPONENT, request.method, scope["path"]
            )
            if started:
                raise  # the status line is out: the connection is cut, as by the route
            await failure(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        runtime: Runtime = self.owner.state.runtime
        fs: FileSystem = self.owner.state.filesystem
        headers = request.headers
        method = request.method
        try:
            user = runtime.auth.authenticate(headers.get("authorization"))
            request.scope[USER_KEY] = user.name
            target = request_path(request, FILES_PREFIX)
            if method == "PUT":
                return await answer_replace(
                    fs,
                    user,
                    target,
                    request,
                    if_match=headers.get("if-match"),
                    if_none_match=headers.get("if-none-match"),
                    backend=headers.get("x-callfs-backend"),
                )
            if method == "POST":
                return await answer_create(
                    fs,
                    user,
                    target,
                    request,
                    mode=request.query_params.get("mode"),
                    backend=headers.get("x-callfs-backend"),
                )
            return await answer_read(
                fs,
                user,
                target,
                head=method == "HEAD",
                if_none_match=headers.get("if-none-match"),
                range_header=headers.get("range"),
            )
        except CallFSError as exc:
            return domain_error_response(
                exc, runtime.metrics, COMPONENT, request.method, request.url.path
            )
        except HTTPException as exc:
            return http_error_response(exc)
        except ClientDisconnect:
            return disconnected_response(method, request.url.path)
