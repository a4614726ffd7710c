"""The dedicated metrics listener: every answer carries the API's security headers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from callfs.metrics import Metrics
from callfs.serving import bound_port, metrics_server
from callfs.web import SECURITY_HEADERS
from tests.support.harness import make_settings


@pytest.fixture
async def metrics_url(tmp_path: Path) -> AsyncIterator[str]:
    """A real metrics listener on a free loopback port."""
    server = metrics_server(Metrics(), make_settings(tmp_path, "sqlite", None))
    assert server is not None
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{bound_port(server)}"
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", "/metrics", 200),
        ("GET", "/health", 200),
        ("GET", "/nothing", 404),
        ("POST", "/v1/files/x", 404),
        ("GET", "/", 404),
    ],
)
async def test_every_metrics_listener_answer_has_security_headers(
    metrics_url: str, method: str, target: str, status: int
) -> None:
    async with httpx.AsyncClient(base_url=metrics_url) as client:
        response = await client.request(method, target)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS:
        assert response.headers[name.decode()] == value.decode(), name
    assert "strict-transport-security" not in response.headers


async def test_metrics_listener_unknown_path_is_404_not_found(metrics_url: str) -> None:
    async with httpx.AsyncClient(base_url=metrics_url) as client:
        response = await client.get("/v1/files/x")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": "NOT_FOUND", "message": "no such endpoint"}
