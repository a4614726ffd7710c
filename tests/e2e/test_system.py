"""The system from outside: health through both front doors, authentication, the metrics scrape."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.target import Target, code

pytestmark = pytest.mark.e2e

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.mark.parametrize("door", [1, 2])
def test_health_answers_through_each_front_door(target: Target, door: int) -> None:
    response = target.client(0, door).get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"metadata_store": "ok", "coordination": "ok"},
    }
    for header, value in SECURITY_HEADERS.items():
        assert response.headers[header] == value
    assert response.headers["x-request-id"]


def test_request_id_is_echoed_through_the_ingress(anonymous: httpx.Client) -> None:
    response = anonymous.get("/health", headers={"X-Request-ID": "e2e-trace-0123"})
    assert response.headers["x-request-id"] == "e2e-trace-0123"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-key-of-this-system"}, {"Authorization": "Basic eDp5"}],
    ids=["missing", "unknown", "malformed"],
)
def test_files_without_a_valid_key_are_401(
    anonymous: httpx.Client, headers: dict[str, str]
) -> None:
    response = anonymous.get("/v1/directories/", headers=headers)
    assert response.status_code == 401
    assert code(response) == "AUTHENTICATION_FAILED"


def test_link_generation_without_a_key_is_401_from_the_link_service(
    anonymous: httpx.Client,
) -> None:
    response = anonymous.post("/v1/links/generate", json={"path": "/anything.txt"})
    assert response.status_code == 401
    assert code(response) == "AUTHENTICATION_FAILED"


def test_metrics_on_the_api_port_need_a_key(anonymous: httpx.Client, user1: httpx.Client) -> None:
    assert anonymous.get("/metrics").status_code == 401
    response = user1.get("/metrics")
    assert response.status_code == 200
    assert "callfs_http_requests_total" in response.text


def test_metrics_listener_counts_requests_by_route_template(
    target: Target, user1: httpx.Client, home: str
) -> None:
    assert target.metrics, "set CALLFS_METRICS to a gateway's metrics listener"
    for index in range(3):
        assert user1.post(f"/v1/files{home}/counted-{index}.txt", content=b"x").status_code == 201
        assert user1.get(f"/v1/files{home}/counted-{index}.txt").status_code == 200
    with httpx.Client(trust_env=False, timeout=30) as scraper:
        response = scraper.get(f"{target.metrics}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    requests = [s for s in families["callfs_http_requests"].samples if s.name.endswith("_total")]
    assert requests, "callfs_http_requests_total has no samples"
    for sample in requests:
        assert set(sample.labels) == {"method", "path", "status_code"}
        assert sample.labels["path"].startswith("/"), sample
    for name in (
        "callfs_http_request_duration_seconds",
        "callfs_file_operations",
        "callfs_backend_ops",
        "callfs_metadata_db_queries",
        "callfs_storage_node_up",
        "callfs_errors",
    ):
        assert name in families, f"{name} is not exported"
    # Route labels are templates: no raw path of this run appears anywhere.
    assert home not in response.text
