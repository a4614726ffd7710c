"""The cleanup worker purges used and expired links in batches, survives failures, and
leaves live links alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from callfs_link_service import cleanup
from callfs_link_service.app import mount_links

from callfs.metadata import open_store
from callfs.metadata.base import LinkRecord, MetadataStore
from tests.links.support import GENEROUS_LIMITS, claims, download_path, error_code, issue
from tests.support.harness import Cluster, make_settings, running_cluster

WAIT = 20.0


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds (the worker runs on its own schedule)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await check():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


def record(token_id: str, *, expires_in: float, used: bool = False) -> LinkRecord:
    now = datetime.now(UTC)
    return LinkRecord(
        token_id=token_id,
        path="/f.txt",
        expires_at=(now + timedelta(seconds=expires_in)).replace(microsecond=0),
        created_by="alice",
        created_at=now.replace(microsecond=0),
        used_at=now.replace(microsecond=0) if used else None,
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    """A real, opened metadata store of each kind."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    settings = make_settings(tmp_path, request.param, dsn)
    opened = open_store(settings.metadata_store)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster whose link cleanup runs every 100 ms."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    settings = make_settings(
        tmp_path, request.param, dsn, links={**GENEROUS_LIMITS, "cleanup_interval": "100ms"}
    )
    async with running_cluster(settings, extend=mount_links) as running:
        yield running


async def test_purge_removes_dead_links_in_batches_and_keeps_live_ones(
    store: MetadataStore,
) -> None:
    for index in range(25):
        await store.create_link(record(f"expired-{index}", expires_in=-10))
    for index in range(12):
        await store.create_link(record(f"used-{index}", expires_in=600, used=True))
    await store.create_link(record("live", expires_in=600))
    assert await cleanup.purge(store, batch=10) == 37
    assert await cleanup.purge(store, batch=10) == 0
    now = datetime.now(UTC)
    assert (await store.consume_link("expired-0", now))[0] == "not_found"
    assert (await store.consume_link("used-0", now))[0] == "not_found"
    assert (await store.consume_link("live", now))[0] == "consumed"


async def test_worker_purges_used_and_expired_links(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    anonymous = cluster.client("anonymous")
    await alice.post("/v1/files/f.txt", content=b"x")
    used = await issue(alice, "/f.txt")
    expiring = await issue(alice, "/f.txt", expiry_seconds=1)
    live = await issue(alice, "/f.txt")
    assert (await anonymous.get(download_path(used))).status_code == 200
    store = cluster.gateway.runtime.store

    async def used_is_purged() -> bool:
        # Once its record is gone, a used link is unknown: 404 instead of 410.
        return (await anonymous.get(download_path(used))).status_code == 404

    await eventually(used_is_purged)
    expiring_claims = claims(expiring["token"])
    # Look only once it has expired: consuming it earlier would use it up.
    await asyncio.sleep(max(0.0, expiring_claims.expires - time.time()) + 0.1)
    expiring_id = expiring_claims.token_id

    async def expired_is_purged() -> bool:
        outcome, _ = await store.consume_link(expiring_id, datetime.now(UTC))
        return outcome == "not_found"

    await eventually(expired_is_purged)
    response = await anonymous.get(download_path(expiring))
    assert response.status_code == 410
    assert error_code(response) == "LINK_EXPIRED"
    assert (await anonymous.get(download_path(live))).status_code == 200


async def test_worker_survives_a_failing_store_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, "sqlite", None)
    store = open_store(settings.metadata_store)
    await store.open()
    await store.create_link(record("dead", expires_in=-10))
    await store.close()
    with caplog.at_level(logging.WARNING, logger="callfs_link_service.cleanup"):
        async with cleanup.running(store, interval=0.1, batch=10):

            async def failure_logged() -> bool:
                return sum("link cleanup failed" in r.getMessage() for r in caplog.records) >= 2

            await eventually(failure_logged)
            await store.open()

            async def purged() -> bool:
                outcome, _ = await store.consume_link("dead", datetime.now(UTC))
                return outcome == "not_found"

            await eventually(purged)
    await store.close()
