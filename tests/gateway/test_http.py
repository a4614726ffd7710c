"""What every response carries: auth, error JSON, request ids, security headers, paths."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from fastapi import FastAPI, Response
from prometheus_client.parser import text_string_to_metric_families
from starlette.background import BackgroundTask

from callfs.errors import BackendUnavailable
from callfs.runtime import Runtime
from callfs.settings import Settings
from tests.gateway.test_files import error_code
from tests.support.harness import USERS, Cluster, running_cluster

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-resource-policy": "same-origin",
}


async def raw_request(
    url: str, method: str, target: str, key: str | None = None
) -> tuple[int, bytes]:
    """Send a request line exactly as written (no client-side path normalization)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}"
    writer.write(f"{head}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_missing_malformed_empty_unknown_keys_are_401(cluster: Cluster) -> None:
    client = cluster.client("anonymous")
    for headers in (
        {},
        {"Authorization": "Foo"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-key"},
    ):
        response = await client.get("/v1/files/", headers=headers)
        assert response.status_code == 401, headers
        assert error_code(response) == "AUTHENTICATION_FAILED"


async def test_internal_secret_is_not_an_api_key(cluster: Cluster) -> None:
    secret = cluster.settings.auth.internal_proxy_secret.get_secret_value()
    response = await cluster.client("anonymous").get(
        "/v1/files/", headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 401


async def test_health_needs_no_auth(cluster: Cluster) -> None:
    response = await cluster.client("anonymous").get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"metadata_store": "ok", "coordination": "ok"},
    }


async def test_ready_answers_when_store_answers(cluster: Cluster) -> None:
    response = await cluster.client("anonymous").get("/ready")
    assert response.status_code == 200


async def test_metrics_on_api_port_needs_auth(cluster: Cluster) -> None:
    assert (await cluster.client("anonymous").get("/metrics")).status_code == 401
    await cluster.client("alice").post("/v1/files/m.txt", content=b"x")
    response = await cluster.client("alice").get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert (
        'callfs_http_requests_total{method="POST",path="/v1/files/{path:path}",status_code="201"}'
        in text
    )
    assert 'callfs_file_operations_total{backend_type="localfs",operation="create"}' in text
    assert "callfs_backend_op_duration_seconds" in text
    assert "/v1/files/m.txt" not in text


async def test_metrics_on_api_port_are_openmetrics_when_asked_without_created_series(
    cluster: Cluster,
) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/om.txt", content=b"x")
    plain = await client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    response = await client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    for text in (plain.text, response.text):
        assert "callfs_http_requests_total{" in text
        assert "process_cpu_seconds_total" in text
        assert "python_gc_collections_total" in text
        assert "_created" not in text


GATEWAY_FAMILIES = (
    "callfs_http_requests",
    "callfs_http_request_duration_seconds",
    "callfs_file_operations",
    "callfs_backend_ops",
    "callfs_backend_op_duration_seconds",
    "callfs_metadata_db_queries",
    "callfs_metadata_db_query_duration_seconds",
    "callfs_lock_operations",
    "callfs_lock_operation_duration_seconds",
    "callfs_active_locks",
    "callfs_errors",
    "callfs_proxy_operations",
    "callfs_storage_node_up",
    "callfs_metadata_cache_hits",
    "callfs_metadata_cache_misses",
)


async def test_every_gateway_metric_family_carries_samples(cluster: Cluster) -> None:
    """API.md: every family is actually emitted, not only registered."""
    client = cluster.client("alice")
    assert (await client.post("/v1/files/fam/one.txt", content=b"1")).status_code == 201
    assert (await client.get("/v1/files/fam/one.txt")).status_code == 200
    assert (await client.get("/v1/files/fam/one.txt")).status_code == 200
    assert (await client.get("/v1/files/fam/absent")).status_code == 404
    response = await client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in GATEWAY_FAMILIES:
        assert name in families, f"{name} is not exported"
        assert families[name].samples, f"{name} has no samples"
    queries = {s.labels["operation"] for s in families["callfs_metadata_db_queries"].samples}
    assert {"get_many", "create"} <= queries
    errors = {
        (s.labels["component"], s.labels["error_type"])
        for s in families["callfs_errors"].samples
        if s.name.endswith("_total")
    }
    assert ("gateway", "FILE_NOT_FOUND") in errors


async def test_every_response_has_request_id_and_security_headers(cluster: Cluster) -> None:
    client = cluster.client("alice")
    responses = [
        await client.get("/health"),
        await client.get("/v1/files/missing"),
        await cluster.client("anonymous").get("/v1/files/"),
        await client.post("/v1/files/x.txt", content=b"x"),
    ]
    ids = set()
    for response in responses:
        for name, value in SECURITY.items():
            assert response.headers[name] == value
        assert "permissions-policy" in response.headers
        assert "strict-transport-security" not in response.headers
        ids.add(response.headers["x-request-id"])
    assert len(ids) == len(responses)


async def test_incoming_request_id_is_echoed(cluster: Cluster) -> None:
    response = await cluster.client("alice").get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_unknown_route_is_json_404(cluster: Cluster) -> None:
    response = await cluster.client("alice").get("/v2/nothing")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


async def test_invalid_paths_are_400_invalid_path(cluster: Cluster) -> None:
    key = USERS["alice"][0]
    targets = [
        "/v1/files/a/../b",
        "/v1/files/..",
        "/v1/files/a/%2e%2e/b",
        "/v1/files/%2E%2E",
        "/v1/files/a/./b",
        "/v1/files/a%2Fb",
        "/v1/files/a%5Cb",
        "/v1/files/a\\b",
        "/v1/files/a//b",
        "/v1/files/a%00b",
        "/v1/files/a%01b",
        "/v1/files/%ff%fe",
        "/v1/files/" + "x" * 256,
        "/v1/files/" + "/".join(["y" * 200] * 21),
    ]
    for target in targets:
        for method in ("GET", "POST", "PUT", "DELETE"):
            status, body = await raw_request(cluster.gateway.url, method, target, key)
            assert status == 400, (method, target, body)
            assert b'"INVALID_PATH"' in body


async def test_fine_names_are_accepted(cluster: Cluster) -> None:
    client = cluster.client("alice")
    for name in ("with space.txt", "dots...txt", "a+b@c", "ünïcødé-文件.txt", ".hidden"):
        response = await client.post(f"/v1/files/ok/{name}", content=name.encode())
        assert response.status_code == 201, name
        assert (await client.get(f"/v1/files/ok/{name}")).content == name.encode()


def requests_counted(text: str, method: str, route: str, status: int) -> float:
    """``callfs_http_requests_total`` for one method, route template and status."""
    wanted = {"method": method, "path": route, "status_code": str(status)}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "callfs_http_requests_total" and sample.labels == wanted:
                return sample.value
    return 0.0


class ExtraRoutes:
    """Routes added to the gateway for these tests: an unexpected exception (500), a
    domain error (503), and an answer whose request goes on after its last byte (a
    background task) until ``released`` is set."""

    def __init__(self) -> None:
        self.released = asyncio.Event()

    def __call__(self, app: FastAPI, settings: Settings, runtime: Runtime) -> None:
        async def crash() -> None:
            raise RuntimeError("a bug")

        async def unavailable() -> None:
            raise BackendUnavailable()

        async def lingering() -> Response:
            return Response(b"done", background=BackgroundTask(self.released.wait))

        app.add_api_route("/test/crash", crash)
        app.add_api_route("/test/unavailable", unavailable)
        app.add_api_route("/test/lingering", lingering)


async def test_a_request_is_counted_once_by_the_time_its_answer_is_in(settings: Settings) -> None:
    routes = ExtraRoutes()
    async with running_cluster(settings, extend=routes) as cluster:
        alice = cluster.client("alice")
        anonymous = cluster.client("anonymous")
        files = "/v1/files/{path:path}"
        steps = [
            (alice, "POST", "/v1/files/seen/a.txt", b"x" * 10_000, files, 201),
            (alice, "GET", "/v1/files/seen/a.txt", None, files, 200),
            (alice, "HEAD", "/v1/files/seen/a.txt", None, files, 200),
            (alice, "GET", "/v1/files/seen/", None, files, 200),
            (alice, "GET", "/v1/directories/seen", None, "/v1/directories/{path:path}", 200),
            (alice, "GET", "/v1/files/seen/absent", None, files, 404),
            (anonymous, "GET", "/v1/files/seen/a.txt", None, files, 401),
            (alice, "GET", "/v2/nothing", None, "unmatched", 404),
            (alice, "GET", "/test/unavailable", None, "/test/unavailable", 503),
            (alice, "GET", "/test/crash", None, "/test/crash", 500),
            (alice, "GET", "/test/lingering", None, "/test/lingering", 200),
            (alice, "DELETE", "/v1/files/seen/a.txt", None, files, 204),
        ]
        try:
            for _ in range(2):
                for client, method, url, body, route, status in steps:
                    routes.released.clear()
                    scraped = (await alice.get("/metrics")).text
                    before = requests_counted(scraped, method, route, status)
                    response = await client.request(method, url, content=body)
                    assert response.status_code == status, (method, url, response.text)
                    scraped = (await alice.get("/metrics")).text
                    after = requests_counted(scraped, method, route, status)
                    assert after - before == 1, (method, url, status)
                    routes.released.set()
        finally:
            routes.released.set()
