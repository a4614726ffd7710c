"""Rate limits: generations per API key, downloads per client address, 429 with Retry-After."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from callfs_link_service.app import mount_links

from tests.links.support import GENEROUS_LIMITS, download_path, error_code, issue
from tests.support.harness import Cluster, make_settings, running_cluster


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster with tiny buckets: 3 generations per key, 2 downloads per address."""
    settings = make_settings(
        tmp_path,
        "sqlite",
        None,
        links={
            "generate_rate": 0.01,
            "generate_burst": 3,
            "download_rate": 0.01,
            "download_burst": 2,
        },
        server={"trusted_proxies": ["127.0.0.1"]},
    )
    async with running_cluster(settings, extend=mount_links) as running:
        yield running


async def test_generation_over_the_burst_is_429_with_retry_after(limited: Cluster) -> None:
    alice = limited.client("alice")
    await alice.post("/v1/files/f.txt", content=b"x")
    for _ in range(3):
        await issue(alice, "/f.txt")
    response = await alice.post("/v1/links/generate", json={"path": "/f.txt"})
    assert response.status_code == 429
    assert error_code(response) == "RATE_LIMIT_EXCEEDED"
    assert int(response.headers["retry-after"]) >= 1
    # Bad requests spend tokens too: the limit is checked before the body.
    assert (await alice.post("/v1/links/generate", content=b"junk")).status_code == 429


async def test_generation_limit_is_per_api_key(limited: Cluster) -> None:
    alice, bob = limited.client("alice"), limited.client("bob")
    await alice.post("/v1/files/f.txt", content=b"x")
    for _ in range(3):
        await issue(alice, "/f.txt")
    assert (await alice.post("/v1/links/generate", json={"path": "/f.txt"})).status_code == 429
    assert (await issue(bob, "/f.txt"))["token"]


async def test_unauthenticated_generation_is_401_not_429(limited: Cluster) -> None:
    anonymous = limited.client("anonymous")
    for _ in range(5):
        response = await anonymous.post("/v1/links/generate", json={"path": "/f.txt"})
        assert response.status_code == 401


async def test_downloads_over_the_burst_are_429_per_address(limited: Cluster) -> None:
    alice = limited.client("alice")
    await alice.post("/v1/files/f.txt", content=b"x")
    links = [await issue(alice, "/f.txt") for _ in range(3)]
    anonymous = limited.client("anonymous")
    assert (await anonymous.get("/download/bogus")).status_code == 404
    assert (await anonymous.get(download_path(links[0]))).status_code == 200
    # Checked before the token: even a valid, unused link waits.
    response = await anonymous.get(download_path(links[1]))
    assert response.status_code == 429
    assert error_code(response) == "RATE_LIMIT_EXCEEDED"
    assert int(response.headers["retry-after"]) >= 1
    # Another client behind the trusted proxy (127.0.0.1) has its own bucket.
    other = {"X-Forwarded-For": "198.51.100.7"}
    response = await anonymous.get(download_path(links[1]), headers=other)
    assert response.status_code == 200
    metrics = (await alice.get("/metrics")).text
    assert 'callfs_rate_limited_total{endpoint="/download/{token}"} 1.0' in metrics


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "sqlite",
        None,
        links={**GENEROUS_LIMITS, "download_rate": 0.01, "download_burst": 2},
    )
    async with running_cluster(settings, extend=mount_links) as cluster:
        anonymous = cluster.client("anonymous")
        statuses = [
            (
                await anonymous.get(
                    "/download/bogus", headers={"X-Forwarded-For": f"203.0.113.{i}"}
                )
            ).status_code
            for i in range(4)
        ]
    # 127.0.0.1 is not trusted here, so all four count against one address.
    assert statuses == [404, 404, 429, 429]
