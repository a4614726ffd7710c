"""Replication: every local-volume file on R storage nodes (here R=2 of 3).

Real storage nodes over gRPC and a real gateway: a file's replicas each hold the
whole object, reads survive a stopped replica (also mid-stream, from the same
byte), writes go to the replicas that are up and need the write quorum.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_files import error_code
from tests.support.harness import Cluster, make_settings, running_cluster
from tests.support.replicas import content, holding

MIB = 1024 * 1024


@pytest.fixture
async def replicated(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = make_settings(tmp_path, "sqlite", None, replication={"factor": 2})
    async with running_cluster(settings, nodes=3) as cluster:
        yield cluster


async def test_a_file_is_stored_whole_on_two_nodes(replicated: Cluster) -> None:
    alice = replicated.client("alice")
    data = content(1, 3 * MIB + 17)
    created = await alice.post("/v1/files/two.bin", content=data)
    assert created.status_code == 201
    replicas = created.json()["replicas"]
    assert len(replicas) == 2 and len(set(replicas)) == 2
    assert created.json()["instance_id"] == replicas[0]
    assert holding(replicated, data) == sorted(replicas)
    head = await alice.head("/v1/files/two.bin")
    assert head.headers["x-callfs-replicas"] == ",".join(replicas)
    assert (await alice.get("/v1/files/two.bin")).content == data


async def test_every_file_stays_readable_with_any_one_node_stopped(replicated: Cluster) -> None:
    alice = replicated.client("alice")
    files = {f"/v1/files/f{n}.bin": content(n, 100_000 + n) for n in range(12)}
    for url, data in files.items():
        assert (await alice.post(url, content=data)).status_code == 201
    await replicated.stop_node("node-1")
    for url, data in files.items():
        read = await alice.get(url)
        assert (read.status_code, read.content) == (200, data), url
        ranged = await alice.get(url, headers={"Range": "bytes=10-99"})
        assert (ranged.status_code, ranged.content) == (206, data[10:100]), url


async def test_writes_with_one_node_stopped_keep_two_replicas(replicated: Cluster) -> None:
    alice = replicated.client("alice")
    originals: dict[str, list[str]] = {}
    for n in range(8):
        created = await alice.post(f"/v1/files/r{n}.bin", content=content(n, 5000))
        originals[f"/v1/files/r{n}.bin"] = created.json()["replicas"]
    await replicated.stop_node("node-0")
    for url, before in originals.items():
        data = content(100, 7000) + url.encode()
        replaced = await alice.put(url, content=data)
        assert replaced.status_code == 200, replaced.text
        after = replaced.json()["replicas"]
        assert len(after) == 2 and "node-0" not in after
        # The replica that is up keeps the file; the stopped one is replaced.
        assert [n for n in before if n != "node-0"] == [n for n in after if n in before]
        assert (await alice.get(url)).content == data
        assert holding(replicated, data) == sorted(after)
    fresh = await alice.post("/v1/files/fresh.bin", content=b"fresh")
    assert fresh.status_code == 201
    assert sorted(fresh.json()["replicas"]) == ["node-1", "node-2"]
    registry = replicated.gateway.runtime.metrics.registry
    assert (
        registry.get_sample_value("callfs_replica_write_failures_total", {"instance": "node-0"})
        >= 1
    )
    assert replicated.temp_files() == []


async def test_writes_below_the_quorum_are_503_and_leave_nothing(replicated: Cluster) -> None:
    alice = replicated.client("alice")
    kept: str | None = None
    for n in range(20):
        created = await alice.post(f"/v1/files/k{n}.bin", content=b"old content")
        if "node-2" in created.json()["replicas"]:
            kept = f"/v1/files/k{n}.bin"
            break
    assert kept is not None
    objects = len(replicated.stored_objects())
    await replicated.stop_node("node-0")
    await replicated.stop_node("node-1")

    refused = await alice.post("/v1/files/new.bin", content=b"x" * 10_000)
    assert refused.status_code == 503 and error_code(refused) == "BACKEND_UNAVAILABLE"
    replaced = await alice.put(kept, content=b"new content")
    assert replaced.status_code == 503
    read = await alice.get(kept)
    assert (read.status_code, read.content) == (200, b"old content")
    assert (await alice.head("/v1/files/new.bin")).status_code == 404
    assert len(replicated.stored_objects()) == objects
    assert replicated.temp_files() == []


async def test_a_replica_that_lost_the_object_is_passed_over(replicated: Cluster) -> None:
    alice = replicated.client("alice")
    data = content(7, 200_000)
    created = await alice.post("/v1/files/lost.bin", content=data)
    first = created.json()["replicas"][0]
    for stored in replicated.nodes[first].root.rglob("*"):
        if stored.is_file():
            stored.unlink()
    read = await alice.get("/v1/files/lost.bin")
    assert (read.status_code, read.content) == (200, data)


async def test_a_download_goes_on_from_the_same_byte_when_its_node_stops(
    replicated: Cluster,
) -> None:
    alice = replicated.client("alice")
    data = content(9, 48 * MIB)
    created = await alice.post("/v1/files/big.bin", content=data)
    assert created.status_code == 201
    first = created.json()["replicas"][0]
    received = bytearray()
    async with alice.stream("GET", "/v1/files/big.bin") as response:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        while len(received) < 4 * MIB:
            received += await anext(chunks)
        await replicated.stop_node(first)
        async for chunk in chunks:
            received += chunk
    assert len(received) == len(data)
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()


async def test_a_ranged_download_goes_on_when_its_node_stops(replicated: Cluster) -> None:
    alice = replicated.client("alice")
    data = content(11, 24 * MIB)
    created = await alice.post("/v1/files/ranged.bin", content=data)
    first = created.json()["replicas"][0]
    start, end = 3 * MIB + 5, 20 * MIB
    received = bytearray()
    headers = {"Range": f"bytes={start}-{end}"}
    async with alice.stream("GET", "/v1/files/ranged.bin", headers=headers) as response:
        assert response.status_code == 206
        chunks = response.aiter_raw()
        received += await anext(chunks)
        await replicated.stop_node(first)
        async for chunk in chunks:
            received += chunk
    assert bytes(received) == data[start : end + 1]


async def test_a_client_error_leaves_no_replica_behind(replicated: Cluster) -> None:
    alice = replicated.client("alice")

    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * MIB
        yield b"b" * MIB
        raise RuntimeError("the client went away")

    with pytest.raises((httpx.HTTPError, RuntimeError)):
        await alice.post("/v1/files/broken.bin", content=broken())
    assert (await alice.head("/v1/files/broken.bin")).status_code == 404
    assert replicated.stored_objects() == []
    assert replicated.temp_files() == []
