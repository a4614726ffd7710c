"""The dedicated metrics listener: every answer carries the API's security headers; the
exposition is Prometheus text or OpenMetrics as the scrape asks, with the process's
``process_*`` and ``python_*`` families and no ``_created`` series."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from callfs.metrics import CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE, Metrics, wants_openmetrics
from callfs.serving import bound_port, metrics_server
from callfs.web import SECURITY_HEADERS
from tests.support.harness import make_settings


@pytest.fixture
async def metrics_url(tmp_path: Path) -> AsyncIterator[str]:
    """A real metrics listener on a free loopback port, over a gateway's families with
    a counter and a histogram observed."""
    metrics = Metrics()
    metrics.http_requests.labels("GET", "/v1/files/{path:path}", "200").inc()
    metrics.http_duration.labels("GET", "/v1/files/{path:path}").observe(0.01)
    metrics.link_generations.inc()
    server = metrics_server(metrics, make_settings(tmp_path, "sqlite", None))
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


async def test_metrics_are_prometheus_text_with_process_families_and_no_created_series(
    metrics_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=metrics_url) as client:
        response = await client.get("/metrics")
    assert response.headers["content-type"] == CONTENT_TYPE
    text = response.text
    assert "callfs_http_requests_total{" in text
    assert "callfs_single_use_link_generations_total 1.0" in text
    assert "process_cpu_seconds_total" in text
    assert "python_info{" in text
    assert "python_gc_collections_total" in text
    assert "_created" not in text


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text",
        "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3",
        "text/plain;q=0.5, Application/OpenMetrics-Text; version=0.0.1",
    ],
)
async def test_metrics_are_openmetrics_when_the_scrape_asks_for_it(
    metrics_url: str, accept: str
) -> None:
    async with httpx.AsyncClient(base_url=metrics_url) as client:
        response = await client.get("/metrics", headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == OPENMETRICS_CONTENT_TYPE
    assert response.text.endswith("# EOF\n")
    assert "# TYPE callfs_http_requests counter" in response.text
    assert "process_cpu_seconds_total" in response.text
    assert "_created" not in response.text


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("text/plain", False),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; q=0", False),
        ("application/openmetrics-text;q=0.0, text/plain", False),
        ("text/plain;q=1, application/openmetrics-text;q=0.1", True),
    ],
)
def test_only_an_accept_naming_openmetrics_gets_it(accept: str | None, openmetrics: bool) -> None:
    assert wants_openmetrics(accept) is openmetrics
