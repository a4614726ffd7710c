"""Shared-state outages: Redis or PostgreSQL stops under a running gateway, then returns.

DESIGN.md: losing Redis must never lose data (it may briefly refuse mutations); the
metadata store is the truth, so while it is away requests answer 503 and nothing
changes. Neither outage needs a gateway restart to heal. ``/ready`` follows reads: a
Redis outage keeps every replica ready, a metadata-store outage does not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.test_files import error_code
from tests.support.harness import make_settings, running_cluster
from tests.support.servers import PostgresServer, RedisServer

# On PostgreSQL as well: these answers depend on the store's own behaviour.
pytestmark = pytest.mark.both_stores


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


def dependency_up(metrics: httpx.Response) -> dict[str, float]:
    """``callfs_dependency_up`` by dependency, from a ``/metrics`` answer."""
    return {
        sample.labels["dependency"]: sample.value
        for family in text_string_to_metric_families(metrics.text)
        if family.name == "callfs_dependency_up"
        for sample in family.samples
    }


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
        # Reads go on, so the replica stays ready; liveness reports what is missing.
        assert (await cluster.client("anonymous").get("/ready")).status_code == 200
        health = await cluster.client("anonymous").get("/health")
        assert health.status_code == 200
        assert health.json() == {
            "status": "ok",
            "checks": {"metadata_store": "ok", "coordination": "unavailable"},
        }
        assert dependency_up(await client.get("/metrics")) == {
            "metadata_store": 1.0,
            "coordination": 0.0,
        }

        own_redis.resume()
        healed = await until_status(client, "PUT", "/v1/files/kept.txt", 200, content=b"after")
        assert healed.status_code == 200
        assert (await client.get("/v1/files/kept.txt")).content == b"after"
        assert (await cluster.client("anonymous").get("/ready")).status_code == 200
        health = await cluster.client("anonymous").get("/health")
        assert health.json()["checks"] == {"metadata_store": "ok", "coordination": "ok"}
        assert dependency_up(await client.get("/metrics"))["coordination"] == 1.0
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
        health = await cluster.client("anonymous").get("/health")
        assert health.status_code == 200
        assert health.json() == {
            "status": "ok",
            "checks": {"metadata_store": "unavailable", "coordination": "ok"},
        }
        # The bytes of the refused writes were removed again: only the first file's remain.
        assert sorted(cluster.stored_objects()) == objects

        own_postgres.resume()
        read = await until_status(client, "GET", "/v1/files/kept.txt", 200)
        assert (read.status_code, read.content) == (200, b"before")
        assert (await client.head("/v1/files/new.txt")).status_code == 404
        assert (await client.put("/v1/files/kept.txt", content=b"after")).status_code == 200
        assert (await client.get("/v1/files/kept.txt")).content == b"after"
        assert cluster.temp_files() == []


def about_the_store(records: list[logging.LogRecord], level: int) -> list[str]:
    """The messages at ``level`` that speak of the metadata store."""
    return [
        r.getMessage() for r in records if r.levelno == level and "metadata store" in r.getMessage()
    ]


async def test_postgres_outage_logs_one_warning_when_it_starts_and_one_info_when_it_ends(
    tmp_path: Path, own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = own_postgres.create_database("outage")
    settings = make_settings(tmp_path, "postgres", dsn)
    async with running_cluster(settings) as cluster:
        client = cluster.client("alice")
        assert (await client.post("/v1/files/kept.txt", content=b"before")).status_code == 201
        caplog.set_level(logging.INFO)
        caplog.clear()

        own_postgres.halt()
        for method, url, body in (
            ("GET", "/v1/files/kept.txt", None),
            ("PUT", "/v1/files/kept.txt", b"during"),
            ("POST", "/v1/files/new.txt", b"during"),
            ("GET", "/v1/directories/", None),
            ("DELETE", "/v1/files/kept.txt", None),
        ) * 2:
            response = await client.request(method, url, content=body)
            assert response.status_code == 503, (method, url, response.text)
            assert error_code(response) == "BACKEND_UNAVAILABLE"
        assert (await cluster.client("anonymous").get("/ready")).status_code == 503
        # asyncpg retries its idle connections in the background, a first time at once.
        await asyncio.sleep(1.5)
        during = list(caplog.records)

        own_postgres.resume()
        read = await until_status(client, "GET", "/v1/files/kept.txt", 200)
        assert (read.status_code, read.content) == (200, b"before")
        after = caplog.records[len(during) :]

    warnings = about_the_store(during, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("metadata store unavailable: ")
    assert [r.getMessage() for r in during if r.exc_info or r.levelno >= logging.ERROR] == []
    assert about_the_store(after, logging.INFO) == ["metadata store available again"]
    assert about_the_store(after, logging.WARNING) == []
