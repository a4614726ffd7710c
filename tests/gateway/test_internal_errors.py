"""A 500 is API.md's JSON with no internals, and carries the request id and security headers."""

from __future__ import annotations

from pathlib import Path

import httpx
from callfs_link_service.app import create_app as create_link_service
from fastapi import FastAPI

from callfs.runtime import Runtime
from callfs.settings import Settings
from tests.gateway.test_http import SECURITY, requests_counted
from tests.support.harness import make_settings, running_cluster

INTERNALS = "secret internals at /var/lib/callfs/node-0"
INTERNAL_ERROR = {"code": "INTERNAL_ERROR", "message": "internal error"}


def add_crash(
    app: FastAPI, settings: Settings | None = None, runtime: Runtime | None = None
) -> None:
    """A route that fails the way a bug does: a plain exception nothing maps."""

    async def crash() -> None:
        raise RuntimeError(INTERNALS)

    app.add_api_route("/test/crash", crash, methods=["GET", "POST"])


def assert_internal_error(response: httpx.Response, request_id: str | None) -> None:
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == INTERNAL_ERROR
    assert "secret" not in response.text
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, name
    assert "permissions-policy" in response.headers
    if request_id is None:
        assert response.headers.get("x-request-id")
    else:
        assert response.headers.get("x-request-id") == request_id


async def test_a_gateway_500_carries_request_id_and_security_headers(settings: Settings) -> None:
    async with running_cluster(settings, extend=add_crash) as cluster:
        alice = cluster.client("alice")
        echoed = await alice.get("/test/crash", headers={"X-Request-ID": "crash-123"})
        assert_internal_error(echoed, "crash-123")
        assert "strict-transport-security" not in echoed.headers
        fresh = [await alice.request(method, "/test/crash") for method in ("GET", "POST")]
        for response in fresh:
            assert_internal_error(response, None)
        assert len({r.headers["x-request-id"] for r in [echoed, *fresh]}) == 3


async def test_a_link_service_500_carries_request_id_and_security_headers(
    tmp_path: Path,
) -> None:
    app = create_link_service(make_settings(tmp_path, "sqlite", None))
    add_crash(app)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://links") as client:
        response = await client.get("/test/crash", headers={"X-Request-ID": "link-crash-1"})
    assert_internal_error(response, "link-crash-1")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    scraped = app.state.metrics.render().decode()
    assert requests_counted(scraped, "GET", "/test/crash", 500) == 1
