"""Two gateway replicas sharing PostgreSQL and Redis see each other's writes at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.harness import Cluster, make_settings, running_cluster


@pytest.fixture
async def replicas(tmp_path: Path, postgres_dsn: str, redis_url: str) -> AsyncIterator[Cluster]:
    settings = make_settings(
        tmp_path,
        "postgres",
        postgres_dsn,
        dlm={"type": "redis", "redis_addr": redis_url},
        metadata_store={"cache_ttl": "300s"},
    )
    async with running_cluster(settings, replicas=2) as cluster:
        yield cluster


async def test_write_on_one_replica_is_read_on_the_other(replicas: Cluster) -> None:
    first = replicas.client("alice", replica=0)
    second = replicas.client("alice", replica=1)
    await first.post("/v1/files/shared.txt", content=b"v1")
    # Warm the second replica's cache, then change the file through the first.
    assert (await second.get("/v1/files/shared.txt")).content == b"v1"
    await first.put("/v1/files/shared.txt", content=b"version two")
    assert (await second.get("/v1/files/shared.txt")).content == b"version two"
    await first.patch("/v1/files/shared.txt", json={"mode": "0600"})
    assert (await second.head("/v1/files/shared.txt")).headers["x-callfs-mode"] == "0600"
    await first.delete("/v1/files/shared.txt")
    assert (await second.get("/v1/files/shared.txt")).status_code == 404


async def test_moves_invalidate_subtrees_on_other_replica(replicas: Cluster) -> None:
    first = replicas.client("alice", replica=0)
    second = replicas.client("alice", replica=1)
    await first.post("/v1/files/tree/leaf.txt", content=b"leaf")
    assert (await second.get("/v1/files/tree/leaf.txt")).status_code == 200
    await first.patch("/v1/files/tree", json={"name": "moved"})
    assert (await second.get("/v1/files/tree/leaf.txt")).status_code == 404
    assert (await second.get("/v1/files/moved/leaf.txt")).content == b"leaf"


async def test_racing_creates_across_replicas(replicas: Cluster) -> None:
    clients = [replicas.client("alice", replica=i % 2) for i in range(10)]
    responses = await asyncio.gather(
        *(c.post("/v1/files/contest.txt", content=str(i).encode()) for i, c in enumerate(clients))
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
