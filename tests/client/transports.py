"""httpx transports that wrap the real one: count requests, fail the first ones.

They never stand in for CallFS: every request they let through reaches the real server.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

Rule = Callable[[httpx.Request], bool]


def always(request: httpx.Request) -> bool:
    return True


def _unavailable(request: httpx.Request, retry_after: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Request-ID": "injected-503"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = {"code": "BACKEND_UNAVAILABLE", "message": "injected by the test transport"}
    return httpx.Response(503, headers=headers, content=json.dumps(body).encode(), request=request)


class Recording(httpx.HTTPTransport):
    """The real transport, keeping every request it is handed (and the failures it injects).

    ``connect_errors``/``unavailable``: how many of the first requests matching
    ``rule`` fail with ``httpx.ConnectError`` / are answered ``503`` instead of sent.
    """

    def __init__(
        self,
        *,
        connect_errors: int = 0,
        unavailable: int = 0,
        retry_after: str | None = None,
        rule: Rule = always,
    ) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []
        self.connect_errors = connect_errors
        self.unavailable = unavailable
        self.retry_after = retry_after
        self.rule = rule

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.rule(request):
            if self.connect_errors:
                self.connect_errors -= 1
                raise httpx.ConnectError("injected connection failure", request=request)
            if self.unavailable:
                self.unavailable -= 1
                return _unavailable(request, self.retry_after)
        return super().handle_request(request)

    def sent(self, method: str, path_part: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and path_part in r.url.path]


class AsyncRecording(httpx.AsyncHTTPTransport):
    """:class:`Recording` for :class:`~callfs.client.AsyncClient`."""

    def __init__(
        self,
        *,
        connect_errors: int = 0,
        unavailable: int = 0,
        retry_after: str | None = None,
        rule: Rule = always,
    ) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []
        self.connect_errors = connect_errors
        self.unavailable = unavailable
        self.retry_after = retry_after
        self.rule = rule

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.rule(request):
            if self.connect_errors:
                self.connect_errors -= 1
                raise httpx.ConnectError("injected connection failure", request=request)
            if self.unavailable:
                self.unavailable -= 1
                return _unavailable(request, self.retry_after)
        return await super().handle_async_request(request)

    def sent(self, method: str, path_part: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and path_part in r.url.path]
