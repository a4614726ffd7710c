"""The small-object cache: a hot small file is served without a storage-node call, a
new version is never answered from the old one's bytes, and big files always stream
from the nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from callfs.settings import Settings
from tests.support.harness import Cluster, make_settings, running_cluster

SMALL = b"small and hot\n" * 100
BIG = bytes(range(256)) * 1024  # 256 KiB, over the largest object the cache keeps


def _reads(cluster: Cluster) -> float:
    metrics = cluster.gateway.runtime.metrics.render().decode()
    for line in metrics.splitlines():
        if line.startswith('callfs_backend_ops_total{backend_type="localfs",operation="read"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wipe(cluster: Cluster) -> None:
    """Remove every stored object from the nodes' volumes."""
    for stored in cluster.stored_objects():
        stored.unlink()


async def test_a_small_file_read_twice_reaches_the_nodes_once(cluster: Cluster) -> None:
    client = cluster.client()
    assert (await client.put("/v1/files/hot.txt", content=SMALL)).status_code == 201

    first = await client.get("/v1/files/hot.txt")
    _wipe(cluster)
    second = await client.get("/v1/files/hot.txt")
    ranged = await client.get("/v1/files/hot.txt", headers={"Range": "bytes=14-26"})

    assert first.content == second.content == SMALL
    assert (ranged.status_code, ranged.content) == (206, SMALL[14:27])
    assert _reads(cluster) == 1.0


async def test_a_replaced_file_is_never_answered_from_its_old_bytes(cluster: Cluster) -> None:
    client = cluster.client()
    await client.put("/v1/files/v.txt", content=b"version one")
    assert (await client.get("/v1/files/v.txt")).content == b"version one"

    await client.put("/v1/files/v.txt", content=b"version two, longer")

    assert (await client.get("/v1/files/v.txt")).content == b"version two, longer"


async def test_big_files_stream_from_the_nodes_every_time(cluster: Cluster) -> None:
    client = cluster.client()
    await client.put("/v1/files/big.bin", content=BIG)

    assert (await client.get("/v1/files/big.bin")).content == BIG
    assert (await client.get("/v1/files/big.bin")).content == BIG
    assert _reads(cluster) == 2.0


async def test_bytes_that_do_not_match_the_metadata_are_not_kept(cluster: Cluster) -> None:
    client = cluster.client()
    await client.put("/v1/files/t.txt", content=b"the real bytes")
    (stored,) = cluster.stored_objects()
    stored.write_bytes(b"THE REAL BYTES")  # same size, other content, sidecar left as it was

    answer = await client.get("/v1/files/t.txt")

    assert answer.status_code == 503
    assert answer.json()["code"] == "BACKEND_UNAVAILABLE"
    assert cluster.gateway.runtime.objects is not None
    assert cluster.gateway.runtime.objects.size == 0


@pytest.fixture
def uncached(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, "sqlite", None, server={"object_cache_bytes": 0})


async def test_a_cache_of_size_zero_is_off(uncached: Settings) -> None:
    async with running_cluster(uncached) as cluster:
        client = cluster.client()
        await client.put("/v1/files/c.txt", content=SMALL)

        assert (await client.get("/v1/files/c.txt")).content == SMALL
        assert (await client.get("/v1/files/c.txt")).content == SMALL

        assert cluster.gateway.runtime.objects is None
        assert _reads(cluster) == 2.0
