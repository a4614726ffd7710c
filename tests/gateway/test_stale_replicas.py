"""Mutations decide from the metadata store itself, never from a replica's cache.

Two gateway replicas share PostgreSQL but not a cache bus (each has its own
in-process one), so every invalidation between them is lost: the worst a Redis
outage can do to pub/sub. Reads through the deaf replica may be stale; what it
changes and what it discards must not be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.harness import Cluster, make_settings, running_cluster


@pytest.fixture
async def deaf(tmp_path: Path, postgres_dsn: str) -> AsyncIterator[Cluster]:
    settings = make_settings(
        tmp_path, "postgres", postgres_dsn, metadata_store={"cache_ttl": "300s"}
    )
    async with running_cluster(settings, replicas=2) as cluster:
        yield cluster


async def test_a_replace_through_a_stale_replica_keeps_the_renamed_files_bytes(
    deaf: Cluster,
) -> None:
    """The issue's sequence: Y caches A; X renames A to B and creates A anew; Y replaces A.

    Deciding from its cache, Y took A's old object (now B's) for the one it replaced
    and deleted it: B stayed listed with its bytes gone.
    """
    x, y = deaf.client("alice", 0), deaf.client("alice", 1)
    for n in range(5):
        a, b = f"/v1/files/a{n}.txt", f"/v1/files/b{n}.txt"
        assert (await x.post(a, content=b"first A")).status_code == 201
        assert (await y.get(a)).content == b"first A"
        assert (await x.patch(a, json={"name": f"b{n}.txt"})).status_code == 200
        assert (await x.post(a, content=b"second A")).status_code == 201

        replaced = await y.put(a, content=b"A from Y")
        assert replaced.status_code == 200

        for client in (x, y):
            moved = await client.get(b)
            assert (moved.status_code, moved.content) == (200, b"first A")
        assert (await x.get(a)).content == b"A from Y"
    # One object per file: each "second A" went when Y replaced it, nothing else did.
    assert len(deaf.stored_objects()) == 10
    assert deaf.temp_files() == []


async def test_a_chmod_through_a_stale_replica_keeps_the_current_content(
    deaf: Cluster,
) -> None:
    """Y's chmod once rewrote the whole row from its cache, pointing A back at a
    deleted object."""
    x, y = deaf.client("alice", 0), deaf.client("alice", 1)
    assert (await x.post("/v1/files/c.txt", content=b"one")).status_code == 201
    assert (await y.get("/v1/files/c.txt")).content == b"one"
    assert (await x.put("/v1/files/c.txt", content=b"two")).status_code == 200

    changed = await y.patch("/v1/files/c.txt", json={"mode": "0600"})
    assert changed.status_code == 200

    read = await x.get("/v1/files/c.txt")
    assert (read.status_code, read.content) == (200, b"two")
    assert read.headers["x-callfs-mode"] == "0600"
    assert len(deaf.stored_objects()) == 1


async def test_a_create_through_a_stale_replica_sees_the_file_made_elsewhere(
    deaf: Cluster,
) -> None:
    """Y saw no file at the path; X has made one since: Y's POST is 409, X's file intact."""
    x, y = deaf.client("alice", 0), deaf.client("alice", 1)
    assert (await y.get("/v1/files/d.txt")).status_code == 404
    assert (await y.get("/v1/files/")).status_code == 200
    assert (await x.post("/v1/files/d.txt", content=b"from X")).status_code == 201
    assert (await y.post("/v1/files/d.txt", content=b"from Y")).status_code == 409
    assert (await y.post("/v1/files/d.txt/", content=b"")).status_code == 409
    assert (await x.get("/v1/files/d.txt")).content == b"from X"
    assert len(deaf.stored_objects()) == 1
