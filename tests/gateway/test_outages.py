"""Shared-state outages: Redis or PostgreSQL stops under a running gateway, then returns.

DESIGN.md: losing Redis must never lose data (it may briefly refuse mutations); the
metadata store is the truth, so while it is away requests answer 503 and nothing
changes. Neither outage needs a gateway restart to heal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_files import error_code
from tests.support.harness import make_settings, running_cluster
from tests.support.servers import PostgresServer, RedisServer


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, so stopping it disturbs no other test."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, so stopping it disturbs no other test."""
    with PostgresServer() as server:
        yield server


async def until_status(
    client: httpx.AsyncClient, method: str, url: str, status: int, content: bytes | None = None
) -> httpx.Response:
    """Repeat a request until it answers ``status`` (a pool may drop a dead connection first)."""
    response = await client.request(method, url, content=content)
    for _ in range(50):
        if response.status_code == status:
            break
        await asyncio.sleep(0.1)
        response = await client.request(method, url, content=content)
    return response


async def test_redis_outage_refuses_mutations_keeps_reads_and_heals(
    tmp_path: Path, postgres_dsn: str, own_redis: RedisServer
) -> None:
    settings = make_settings(
        tmp_path, "postgres", postgres_dsn, dlm={"type": "redis", "redis_addr": own_redis.url}
    )
    async with running_cluster(settings) as cluster:
        client = cluster.client("alice")
        assert (await client.post("/v1/files/kept.txt", content=b"before")).status_code == 201

        own_redis.halt()
        refused = await client.put("/v1/files/kept.txt", content=b"during")
        assert refused.status_code == 503
        assert error_code(refused) == "BACKEND_UNAVAILABLE"
        created = await client.post("/v1/files/new.txt", content=b"during")
        assert created.status_code == 503
        # Reads need no lock: the file is served, untouched.
        read = await client.get("/v1/files/kept.txt")
        assert (read.status_code, read.content) == (200, b"before")
        assert (await client.head("/v1/files/new.txt")).status_code == 404
        assert (await cluster.client("anonymous").get("/ready")).status_code == 503
        assert (await cluster.client("anonymous").get("/health")).status_code == 200

        own_redis.resume()
        healed = await until_status(client, "PUT", "/v1/files/kept.txt", 200, content=b"after")
        assert healed.status_code == 200
        assert (await client.get("/v1/files/kept.txt")).content == b"after"
        assert (await cluster.client("anonymous").get("/ready")).status_code == 200
        assert cluster.temp_files() == []


async def test_postgres_outage_answers_503_changes_nothing_and_heals(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    dsn = own_postgres.create_database("outage")
    settings = make_settings(tmp_path, "postgres", dsn)
    async with running_cluster(settings) as cluster:
        client = cluster.client("alice")
        assert (await client.post("/v1/files/kept.txt", content=b"before")).status_code == 201
        objects = sorted(cluster.stored_objects())

        own_postgres.halt()
        for method, url, body in (
            ("PUT", "/v1/files/kept.txt", b"during"),
            ("POST", "/v1/files/new.txt", b"during"),
            ("DELETE", "/v1/files/kept.txt", None),
            ("GET", "/v1/directories/", None),
        ):
            response = await client.request(method, url, content=body)
            assert response.status_code == 503, (method, url, response.text)
            assert error_code(response) == "BACKEND_UNAVAILABLE"
            assert "Traceback" not in response.text
        assert (await cluster.client("anonymous").get("/ready")).status_code == 503
        # The bytes of the refused writes were removed again: only the first file's remain.
        assert sorted(cluster.stored_objects()) == objects

        own_postgres.resume()
        read = await until_status(client, "GET", "/v1/files/kept.txt", 200)
        assert (read.status_code, read.content) == (200, b"before")
        assert (await client.head("/v1/files/new.txt")).status_code == 404
        assert (await client.put("/v1/files/kept.txt", content=b"after")).status_code == 200
        assert (await client.get("/v1/files/kept.txt")).content == b"after"
        assert cluster.temp_files() == []
