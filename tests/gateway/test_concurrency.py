"""Races and broken uploads: exactly one winner, whole content, nothing left behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.support.harness import USERS, Cluster

# On PostgreSQL as well: these answers depend on the store's own behaviour.
pytestmark = pytest.mark.both_stores


async def test_racing_creates_give_one_201_and_409s(cluster: Cluster) -> None:
    client = cluster.client("alice")
    responses = await asyncio.gather(
        *(client.post("/v1/files/race.txt", content=f"writer {i}".encode()) for i in range(12))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 11
    winner = next(r for r in responses if r.status_code == 201)
    content = (await client.get("/v1/files/race.txt")).content
    assert winner.json()["size"] == len(content)
    assert len(cluster.stored_objects()) == 1


async def test_concurrent_puts_leave_exactly_one_whole_content(cluster: Cluster) -> None:
    client = cluster.client("alice")
    bodies = [bytes([65 + i]) * (200_000 + i) for i in range(8)]
    responses = await asyncio.gather(*(client.put("/v1/files/put.bin", content=b) for b in bodies))
    assert all(r.status_code in (200, 201) for r in responses)
    assert sum(r.status_code == 201 for r in responses) == 1
    final = (await client.get("/v1/files/put.bin")).content
    assert final in bodies
    assert len(cluster.stored_objects()) == 1
    assert cluster.temp_files() == []


async def test_disconnect_mid_upload_keeps_old_content(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/keep.bin", content=b"old content")
    parts = urlsplit(cluster.gateway.url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        (
            "PUT /v1/files/keep.bin HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {USERS['alice'][0]}\r\n"
            "Content-Length: 10000000\r\n\r\n"
        ).encode()
        + b"n" * 3_000_000
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()
    for _ in range(100):
        if not cluster.temp_files():
            break
        await asyncio.sleep(0.05)
    assert cluster.temp_files() == []
    assert (await client.get("/v1/files/keep.bin")).content == b"old content"
    assert len(cluster.stored_objects()) == 1


async def test_disconnect_mid_download_logs_no_error(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    client = cluster.client("alice")
    data = bytes(range(256)) * (128 * 1024)
    assert (await client.post("/v1/files/big.bin", content=data)).status_code == 201
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        async with client.stream("GET", "/v1/files/big.bin") as response:
            assert response.status_code == 200
            body = response.aiter_raw()
            await anext(body)
            # The gateway and its storage node fill their buffers meanwhile.
            await asyncio.sleep(0.3)
    # Both hear of the disconnect at once; give their logs a moment to show it.
    await asyncio.sleep(0.5)
    assert [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info
    ] == []
    assert (await client.get("/v1/files/big.bin")).content == data


async def test_chunked_upload_over_maximum_is_413_and_keeps_old(cluster: Cluster) -> None:
    cluster.settings.server.max_upload_bytes = 100_000
    client = cluster.client("alice")
    await client.post("/v1/files/lim.bin", content=b"old")

    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"z" * 20_000

    response = await client.put("/v1/files/lim.bin", content=body())
    assert response.status_code == 413
    assert (await client.get("/v1/files/lim.bin")).content == b"old"
    assert cluster.temp_files() == []
    assert len(cluster.stored_objects()) == 1


async def test_large_streamed_upload_roundtrip(cluster: Cluster) -> None:
    client = cluster.client("alice")
    chunk = bytes(range(256)) * 4096  # 1 MiB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield chunk

    response = await client.post("/v1/files/big.bin", content=body())
    assert response.status_code == 201
    assert response.json()["size"] == 20 * len(chunk)
    total = 0
    async with client.stream("GET", "/v1/files/big.bin") as stream:
        async for piece in stream.aiter_bytes():
            total += len(piece)
    assert total == 20 * len(chunk)


async def test_racing_mkdirs_give_one_201_and_200s(cluster: Cluster) -> None:
    client = cluster.client("alice")
    responses = await asyncio.gather(*(client.post("/v1/files/made/") for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    listing = await client.get("/v1/directories/")
    assert [i["path"] for i in listing.json()["items"]] == ["/made"]


async def test_racing_moves_of_one_source_have_one_winner(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/src.txt", content=b"payload")
    responses = await asyncio.gather(
        *(
            client.patch("/v1/files/src.txt", json={"destination": f"/dst-{i}.txt"})
            for i in range(6)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [404] * 5
    winner = next(r for r in responses if r.status_code == 200).json()["path"]
    assert (await client.get(f"/v1/files{winner}")).content == b"payload"
    names = [i["path"] for i in (await client.get("/v1/directories/")).json()["items"]]
    assert names == [winner]
    assert len(cluster.stored_objects()) == 1


async def test_crossing_swaps_neither_deadlock_nor_lose_a_file(cluster: Cluster) -> None:
    """a→b and b→a at once (overwrite): locks are taken in one order, so both finish."""
    client = cluster.client("alice")
    await client.post("/v1/files/a.txt", content=b"A")
    await client.post("/v1/files/b.txt", content=b"B")
    responses = await asyncio.gather(
        client.patch("/v1/files/a.txt", json={"destination": "/b.txt", "overwrite": True}),
        client.patch("/v1/files/b.txt", json={"destination": "/a.txt", "overwrite": True}),
    )
    # Serialized either way: the second move either finds its source gone (404) or
    # moves the survivor back (200); never a deadlock, a 5xx or two files.
    assert sorted(r.status_code for r in responses) in ([200, 200], [200, 404])
    items = (await client.get("/v1/directories/")).json()["items"]
    assert len(items) == 1
    survivor = items[0]["path"]
    content = (await client.get(f"/v1/files{survivor}")).content
    assert (survivor, content) in (
        ("/a.txt", b"A"),
        ("/b.txt", b"B"),
        ("/a.txt", b"B"),
        ("/b.txt", b"A"),
    )
    assert len(cluster.stored_objects()) == 1


async def test_delete_racing_replace_ends_whole_or_absent(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/flux.bin", content=b"v0")
    body = b"v1" * 100_000
    responses = await asyncio.gather(
        client.put("/v1/files/flux.bin", content=body),
        client.delete("/v1/files/flux.bin"),
        client.put("/v1/files/flux.bin", content=body),
    )
    assert all(r.status_code < 500 for r in responses)
    final = await client.get("/v1/files/flux.bin")
    if final.status_code == 200:
        assert final.content == body
        assert len(cluster.stored_objects()) == 1
    else:
        assert final.status_code == 404
        assert cluster.stored_objects() == []
    assert cluster.temp_files() == []
