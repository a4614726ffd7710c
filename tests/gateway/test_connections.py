"""Per-connection limits: idle, slow and oversized clients are cut off, others served.

The limits are set to one second here; each wait below is bounded well above that
and ends as soon as the server closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callfs.web import SECURITY_HEADERS
from tests.support.harness import USERS, Cluster, make_settings, running_cluster
from tests.support.polling import wait_until

LIMIT = 1.0
BOUND = 20.0  # seconds a closing may take at most on a busy machine
MAX_HEADER_BYTES = 8192
AUTH = f"Authorization: Bearer {USERS['alice'][0]}\r\n"


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = make_settings(
        tmp_path,
        "sqlite",
        None,
        server={
            "read_timeout": f"{LIMIT}s",
            "write_timeout": f"{LIMIT}s",
            "idle_timeout": f"{LIMIT}s",
            "max_header_bytes": MAX_HEADER_BYTES,
        },
    )
    async with running_cluster(settings) as cluster:
        yield cluster


def address(cluster: Cluster) -> tuple[str, int]:
    host, port = cluster.gateway.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def connect(
    cluster: Cluster, *, receive_buffer: int | None = None, limit: int = 2**20
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address(cluster))
    return await asyncio.open_connection(sock=sock, limit=limit)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    async with asyncio.timeout(BOUND):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


async def healthy(cluster: Cluster) -> None:
    response = await cluster.client("anonymous").get("/health")
    assert response.status_code == 200


async def test_headers_over_the_limit_answer_431_as_json(strict: Cluster) -> None:
    reader, writer = await connect(strict)
    padding = "x" * (MAX_HEADER_BYTES + 1)
    writer.write(f"GET /v1/files/ HTTP/1.1\r\nHost: t\r\n{AUTH}X-Pad: {padding}\r\n\r\n".encode())
    answer = await closed_by_server(reader)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 431 ")
    headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines[1:])}
    for name, value in SECURITY_HEADERS:
        assert headers[name] == value
    assert headers[b"x-request-id"]
    assert json.loads(body)["code"] == "BAD_REQUEST"
    writer.close()
    await healthy(strict)


async def test_endless_headers_are_refused_without_reading_them_all(strict: Cluster) -> None:
    """A 20 MiB header once got 200: now the server answers 431 and closes early."""
    reader, writer = await connect(strict)
    writer.write(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: ")
    sent = 0
    with pytest.raises((ConnectionError, TimeoutError)):
        async with asyncio.timeout(BOUND):
            while sent < 20 * 2**20:
                writer.write(b"y" * 65536)
                await writer.drain()
                sent += 65536
    assert sent < 20 * 2**20
    # The answer is 431, but a client still sending when the server closes may see a
    # reset instead (the kernel drops what it had not read).
    answer = await closed_by_server(reader)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    await healthy(strict)


async def test_headers_within_the_limit_are_served(strict: Cluster) -> None:
    padding = "x" * (MAX_HEADER_BYTES // 2)
    response = await strict.client("alice").get("/v1/files/", headers={"X-Pad": padding})
    assert response.status_code == 200


async def test_a_connection_that_sends_nothing_is_closed(strict: Cluster) -> None:
    reader, writer = await connect(strict)
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_partial_headers_are_cut_off(strict: Cluster) -> None:
    reader, writer = await connect(strict)
    writer.write(f"GET /v1/files/ HTTP/1.1\r\nHost: t\r\n{AUTH}".encode())
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_stalled_body_is_cut_off_and_the_old_content_stays(strict: Cluster) -> None:
    alice = strict.client("alice")
    assert (await alice.post("/v1/files/kept.txt", content=b"old content")).status_code == 201
    for method, path in (("PUT", "kept.txt"), ("POST", "fresh.txt")):
        reader, writer = await connect(strict)
        request = (
            f"{method} /v1/files/{path} HTTP/1.1\r\nHost: t\r\n{AUTH}Content-Length: 100\r\n\r\n"
        )
        writer.write(request.encode() + b"0123456789")
        await closed_by_server(reader)
        writer.close()
    assert (await alice.get("/v1/files/kept.txt")).content == b"old content"
    assert (await alice.head("/v1/files/fresh.txt")).status_code == 404


async def test_a_download_left_unread_is_cut_off(strict: Cluster) -> None:
    size = 32 * 2**20
    alice = strict.client("alice")
    assert (await alice.put("/v1/files/big.bin", content=b"z" * size)).status_code == 201
    await alice.aclose()
    strict.gateway.clients.clear()
    connections = strict.gateway.server.server_state.connections
    await wait_until(lambda: not connections, timeout=BOUND, what="idle clients gone")
    reader, writer = await connect(strict, receive_buffer=4096, limit=65536)
    writer.write(f"GET /v1/files/big.bin HTTP/1.1\r\nHost: t\r\n{AUTH}\r\n".encode())
    await writer.drain()
    # Read nothing (the stream stops taking bytes at its limit) until the server gave up.
    await wait_until(lambda: not connections, timeout=BOUND, what="the reader cut off")
    received = await closed_by_server(reader)
    assert 0 < len(received) < size
    writer.close()
    await healthy(strict)


async def test_hundreds_of_idle_and_slow_clients_do_not_stop_the_others(strict: Cluster) -> None:
    idle = [await connect(strict) for _ in range(200)]
    slow = [await connect(strict) for _ in range(100)]
    for _, writer in slow:
        writer.write(b"GET /health HTTP/1.1\r\nHost: t\r\n")
    for _ in range(20):
        await healthy(strict)
    outcomes = await asyncio.gather(*(closed_by_server(reader) for reader, _ in idle + slow))
    assert outcomes == [b""] * 300
    for _, writer in idle + slow:
        writer.close()
    await healthy(strict)
