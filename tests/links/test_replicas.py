"""Two link-service replicas (``callfs link-service``'s app, each with its own runtime)
sharing PostgreSQL and Redis: links cross replicas, limits are one, secrets rotate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from callfs.settings import Settings
from tests.links.support import (
    GENEROUS_LIMITS,
    auth,
    download_path,
    error_code,
    issue,
    link_service,
)
from tests.support.harness import LINK_SECRET, Cluster, make_settings, running_cluster

NEW_SECRET = "new-link-secret-0123456789abcdef"


class Shared:
    """A gateway with its nodes, and link-service settings over the same store, Redis and nodes."""

    def __init__(self, cluster: Cluster, tmp_path: Path, dsn: str, redis_url: str) -> None:
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.dsn = dsn
        self.redis_url = redis_url

    def settings(
        self, links: dict[str, Any] | None = None, secrets: list[str] | None = None
    ) -> Settings:
        settings = make_settings(
            self.tmp_path,
            "postgres",
            self.dsn,
            dlm={"type": "redis", "redis_addr": self.redis_url},
            instance_discovery={"peer_endpoints": self.cluster.endpoints()},
            links=links or GENEROUS_LIMITS,
        )
        if secrets is not None:
            settings.auth.single_use_link_secret = [SecretStr(s) for s in secrets]
        return settings


@pytest.fixture
async def shared(tmp_path: Path, postgres_dsn: str, redis_url: str) -> AsyncIterator[Shared]:
    settings = make_settings(
        tmp_path, "postgres", postgres_dsn, dlm={"type": "redis", "redis_addr": redis_url}
    )
    async with running_cluster(settings) as cluster:
        await cluster.client("alice").post("/v1/files/f.txt", content=b"shared bytes")
        yield Shared(cluster, tmp_path, postgres_dsn, redis_url)


async def test_link_generated_on_one_replica_downloads_on_the_other(shared: Shared) -> None:
    settings = shared.settings()
    async with link_service(settings) as first, link_service(settings) as second:
        link = await issue(first, "/f.txt", user="alice")
        downloaded = await second.get(download_path(link))
        assert downloaded.status_code == 200
        assert downloaded.content == b"shared bytes"
        again = await first.get(download_path(link))
        assert again.status_code == 410
        assert error_code(again) == "LINK_USED"


async def test_concurrent_downloads_across_replicas_give_exactly_one_200(shared: Shared) -> None:
    settings = shared.settings()
    async with link_service(settings) as first, link_service(settings) as second:
        link = await issue(first, "/f.txt", user="alice")
        responses = await asyncio.gather(
            *((first, second)[i % 2].get(download_path(link)) for i in range(50))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [410] * 49


async def test_generation_limit_is_one_across_replicas(shared: Shared) -> None:
    settings = shared.settings({**GENEROUS_LIMITS, "generate_rate": 0.01, "generate_burst": 4})
    async with link_service(settings) as first, link_service(settings) as second:
        statuses = [
            (
                await (first, second)[i % 2].post(
                    "/v1/links/generate", json={"path": "/f.txt"}, headers=auth("alice")
                )
            ).status_code
            for i in range(8)
        ]
        # Another key has its own bucket, on either replica.
        assert (await issue(second, "/f.txt", user="bob"))["token"]
    assert statuses == [201] * 4 + [429] * 4


async def test_download_limit_is_one_across_replicas(shared: Shared) -> None:
    settings = shared.settings({**GENEROUS_LIMITS, "download_rate": 0.01, "download_burst": 3})
    async with link_service(settings) as first, link_service(settings) as second:
        responses = [await (first, second)[i % 2].get("/download/bogus") for i in range(6)]
    assert [r.status_code for r in responses] == [404] * 3 + [429] * 3
    assert all(error_code(r) == "RATE_LIMIT_EXCEEDED" for r in responses[3:])


async def test_rotation_keeps_old_links_valid_while_the_old_secret_is_listed(
    shared: Shared,
) -> None:
    async with link_service(shared.settings(secrets=[LINK_SECRET])) as before:
        old_links = [await issue(before, "/f.txt", user="alice") for _ in range(2)]
    async with link_service(shared.settings(secrets=[NEW_SECRET, LINK_SECRET])) as rotating:
        response = await rotating.get(download_path(old_links[0]))
        assert response.status_code == 200
        assert response.content == b"shared bytes"
        new_link = await issue(rotating, "/f.txt", user="alice")
    async with link_service(shared.settings(secrets=[NEW_SECRET])) as after:
        # The old secret is gone: its links are unknown; the new secret's links work.
        assert (await after.get(download_path(old_links[1]))).status_code == 404
        assert (await after.get(download_path(new_link))).status_code == 200
