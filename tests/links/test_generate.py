"""POST /v1/links/generate: every status of API.md's links section, on both stores."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from callfs_link_service.links import base_url

from tests.links.conftest import EXTERNAL_URL
from tests.links.support import claims, error_code, issue
from tests.support.harness import Cluster


def parse_time(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def test_generate_is_201_with_url_token_and_expiry(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/docs/report.pdf", content=b"pdf")
    before = time.time()
    response = await client.post(
        "/v1/links/generate", json={"path": "/docs/report.pdf", "expiry_seconds": 600}
    )
    after = time.time()
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"url", "token", "expires_at", "expires"}
    assert body["url"] == f"https://{EXTERNAL_URL}/download/{body['token']}"
    assert body["expires"] == body["expires_at"]
    expires = parse_time(body["expires_at"]).timestamp()
    assert before + 600 <= expires <= after + 601
    said = claims(body["token"])
    assert said.path == "/docs/report.pdf"
    assert said.expires == expires


async def test_expiry_defaults_to_an_hour(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/f.txt", content=b"x")
    before = time.time()
    body = await issue(client, "/f.txt")
    expires = parse_time(body["expires_at"]).timestamp()
    assert before + 3600 <= expires <= time.time() + 3601
    assert (await issue(client, "/f.txt", expiry_seconds=None))["token"] != body["token"]


async def test_path_without_leading_slash_names_the_same_file(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/a/b.txt", content=b"x")
    assert claims((await issue(client, "a/b.txt"))["token"]).path == "/a/b.txt"


@pytest.mark.parametrize("expiry", [1, 86400])
async def test_expiry_bounds_are_accepted(cluster: Cluster, expiry: int) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/f.txt", content=b"x")
    body = await issue(client, "/f.txt", expiry_seconds=expiry)
    assert claims(body["token"]).expires - time.time() <= expiry + 1


@pytest.mark.parametrize("expiry", [0, -1, 86401, 10**30, 1.5, 60.0, "60", True, False, [60], {}])
async def test_bad_expiry_is_400(cluster: Cluster, expiry: object) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/f.txt", content=b"x")
    response = await client.post(
        "/v1/links/generate", json={"path": "/f.txt", "expiry_seconds": expiry}
    )
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"[]",
        b'"/f.txt"',
        b"null",
        b"{}",
        b'{"path": null}',
        b'{"path": ""}',
        b'{"path": 7}',
        b'{"path": ["/f.txt"]}',
        b"\xff\xfe",
    ],
)
async def test_missing_or_malformed_body_is_400(cluster: Cluster, body: bytes) -> None:
    response = await cluster.client("alice").post("/v1/links/generate", content=body)
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


@pytest.mark.parametrize("path", ["/a/../f.txt", "/a//f.txt", "/a/./f.txt", "/a\\b", "/a\x00b"])
async def test_invalid_path_is_400_invalid_path(cluster: Cluster, path: str) -> None:
    response = await cluster.client("alice").post("/v1/links/generate", json={"path": path})
    assert response.status_code == 400
    assert error_code(response) == "INVALID_PATH"


async def test_body_over_8_kib_is_400(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/f.txt", content=b"x")
    padded = b'{"path": "/f.txt", "pad": "' + b"x" * 8200 + b'"}'
    response = await client.post("/v1/links/generate", content=padded)
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"

    async def chunks() -> object:
        yield padded[:4000]
        yield padded[4000:]

    # Without Content-Length (chunked), the limit holds while reading.
    response = await client.post("/v1/links/generate", content=chunks())  # type: ignore[arg-type]
    assert response.status_code == 400
    # Just under the limit is fine.
    fits = b'{"path": "/f.txt", "pad": "' + b"x" * 8000 + b'"}'
    assert len(fits) <= 8192
    assert (await client.post("/v1/links/generate", content=fits)).status_code == 201


async def test_absent_file_is_404(cluster: Cluster) -> None:
    client = cluster.client("alice")
    for path in ("/nothing.txt", "/no/such/dir/f.txt"):
        response = await client.post("/v1/links/generate", json={"path": path})
        assert response.status_code == 404
        assert error_code(response) == "FILE_NOT_FOUND"


async def test_file_under_a_file_is_404(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/plain.txt", content=b"x")
    response = await client.post("/v1/links/generate", json={"path": "/plain.txt/inner"})
    assert response.status_code == 404


async def test_directory_is_400_is_a_directory(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/dir/")
    for path in ("/dir", "/"):
        response = await client.post("/v1/links/generate", json={"path": path})
        assert response.status_code == 400
        assert error_code(response) == "IS_A_DIRECTORY"
    # A trailing slash names a directory, never a file.
    await client.post("/v1/files/f.txt", content=b"x")
    response = await client.post("/v1/links/generate", json={"path": "/f.txt/"})
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Foo bar"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer nope"},
    ],
)
async def test_missing_or_unknown_key_is_401(cluster: Cluster, headers: dict[str, str]) -> None:
    await cluster.client("alice").post("/v1/files/f.txt", content=b"x")
    async with httpx.AsyncClient(base_url=cluster.gateway.url, headers=headers) as anonymous:
        response = await anonymous.post("/v1/links/generate", json={"path": "/f.txt"})
    assert response.status_code == 401
    assert error_code(response) == "AUTHENTICATION_FAILED"


async def test_caller_without_read_permission_is_403(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/secret.txt?mode=0600", content=b"s")
    response = await cluster.client("bob").post("/v1/links/generate", json={"path": "/secret.txt"})
    assert response.status_code == 403
    assert error_code(response) == "PERMISSION_DENIED"
    # The group bit decides for a member of the file's group, the other bits for the rest.
    await alice.post("/v1/files/group.txt?mode=0640", content=b"g")
    assert (await issue(cluster.client("bob"), "/group.txt"))["token"]
    response = await cluster.client("carol").post("/v1/links/generate", json={"path": "/group.txt"})
    assert response.status_code == 403
    # root may read anything.
    assert (await issue(cluster.client("root"), "/secret.txt"))["token"]


async def test_ancestor_without_search_permission_is_403(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/private/?mode=0700")
    await alice.post("/v1/files/private/open.txt", content=b"x")
    response = await cluster.client("bob").post(
        "/v1/links/generate", json={"path": "/private/open.txt"}
    )
    assert response.status_code == 403
    assert error_code(response) == "PERMISSION_DENIED"


async def test_generations_are_counted(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/f.txt", content=b"x")
    for _ in range(3):
        await issue(client, "/f.txt")
    await client.post("/v1/links/generate", json={"path": "/missing"})
    metrics = (await client.get("/metrics")).text
    assert "callfs_single_use_link_generations_total 3.0" in metrics


@pytest.mark.parametrize(
    ("external", "base"),
    [
        ("files.example.com", "https://files.example.com"),
        ("localhost:8443", "https://localhost:8443"),
        ("http://127.0.0.1:8443/", "http://127.0.0.1:8443"),
        ("https://example.com/callfs/", "https://example.com/callfs"),
    ],
)
def test_link_urls_start_with_the_external_url(external: str, base: str) -> None:
    assert base_url(external) == base
