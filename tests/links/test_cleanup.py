"""The cleanup worker purges expired links (used or not) in batches, on any number of
replicas at once, survives failures, and leaves unexpired links alone: a used link keeps
answering 410 LINK_USED until it expires.
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
from callfs_link_service.tokens import Signer

from callfs.metadata import open_store
from callfs.metadata.base import LinkRecord, MetadataStore
from callfs.settings import Settings
from tests.links.support import GENEROUS_LIMITS, claims, download_path, error_code, issue
from tests.support.clock import ManualClock
from tests.support.harness import LINK_SECRET, Cluster, make_settings, running_cluster
from tests.support.polling import wait_for

WAIT = 20.0


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds (the worker runs on its own schedule)."""
    await wait_for(check, timeout=WAIT)


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
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of a fresh metadata store of each kind."""
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    return make_settings(tmp_path, request.param, dsn)


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[MetadataStore]:
    """A real, opened metadata store of each kind."""
    opened = open_store(store_settings.metadata_store)
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


async def outcome_of(store: MetadataStore, token_id: str, now: datetime | None = None) -> str:
    """What consuming ``token_id`` at ``now`` (default: now) finds (this uses up a live link)."""
    outcome, _ = await store.consume_link(token_id, now or datetime.now(UTC))
    return outcome


async def test_purge_removes_expired_links_in_batches_and_keeps_unexpired_ones(
    store: MetadataStore,
) -> None:
    for index in range(25):
        await store.create_link(record(f"expired-{index}", expires_in=-10))
    for index in range(12):
        await store.create_link(record(f"expired-used-{index}", expires_in=-10, used=True))
    for index in range(7):
        await store.create_link(record(f"used-{index}", expires_in=600, used=True))
    await store.create_link(record("live", expires_in=600))
    assert await cleanup.purge(store, batch=10) == 37
    assert await cleanup.purge(store, batch=10) == 0
    assert await outcome_of(store, "expired-0") == "not_found"
    assert await outcome_of(store, "expired-used-0") == "not_found"
    for index in range(7):
        assert await outcome_of(store, f"used-{index}") == "used"
    assert await outcome_of(store, "live") == "consumed"


async def test_replicas_purging_at_once_delete_each_expired_link_once(
    store: MetadataStore, store_settings: Settings
) -> None:
    for index in range(300):
        await store.create_link(record(f"expired-{index}", expires_in=-10, used=index % 2 == 0))
    for index in range(20):
        await store.create_link(record(f"used-{index}", expires_in=600, used=True))
    replicas = [open_store(store_settings.metadata_store) for _ in range(3)]
    for replica in replicas:
        await replica.open()
    try:
        removed = await asyncio.gather(
            *(cleanup.purge(replica, batch=7) for replica in [*replicas, *replicas])
        )
    finally:
        for replica in replicas:
            await replica.close()
    assert sum(removed) == 300
    assert await cleanup.purge(store, batch=7) == 0
    for index in range(20):
        assert await outcome_of(store, f"used-{index}") == "used"


async def test_worker_keeps_a_used_link_answering_410_used_until_it_expires(
    cluster: Cluster,
) -> None:
    alice = cluster.client("alice")
    anonymous = cluster.client("anonymous")
    store = cluster.gateway.runtime.store
    await alice.post("/v1/files/f.txt", content=b"x")
    used = await issue(alice, "/f.txt")
    assert (await anonymous.get(download_path(used))).status_code == 200
    # A dead record created after the link was used: once the worker has purged it, it
    # has also had its chance at the used link's record.
    await store.create_link(record("dead", expires_in=-10))

    async def dead_is_purged() -> bool:
        return await outcome_of(store, "dead") == "not_found"

    await eventually(dead_is_purged)
    for _ in range(2):
        again = await anonymous.get(download_path(used))
        assert again.status_code == 410
        assert error_code(again) == "LINK_USED"
    assert await outcome_of(store, claims(used["token"]).token_id) == "used"


async def test_worker_purges_a_used_link_once_it_expired_and_it_answers_410_expired(
    cluster: Cluster,
) -> None:
    alice = cluster.client("alice")
    anonymous = cluster.client("anonymous")
    store = cluster.gateway.runtime.store
    await alice.post("/v1/files/f.txt", content=b"x")
    # A link that was used and has expired since, as the worker finds it.
    expires = int(time.time()) - 10
    token, signed = Signer([LINK_SECRET.encode()]).issue("/f.txt", expires)
    gone = datetime.fromtimestamp(expires, UTC)
    await store.create_link(
        LinkRecord(signed.token_id, "/f.txt", gone, "alice", gone, used_at=gone)
    )

    async def purged() -> bool:
        return await outcome_of(store, signed.token_id) == "not_found"

    await eventually(purged)
    response = await anonymous.get(f"/download/{token}")
    assert response.status_code == 410
    assert error_code(response) == "LINK_EXPIRED"


async def test_worker_purges_an_unused_link_once_it_expired(
    cluster: Cluster, clock: ManualClock
) -> None:
    alice = cluster.client("alice")
    anonymous = cluster.client("anonymous")
    store = cluster.gateway.runtime.store
    await alice.post("/v1/files/f.txt", content=b"x")
    expiring = await issue(alice, "/f.txt", expiry_seconds=1)
    live = await issue(alice, "/f.txt")
    expiring_claims = claims(expiring["token"])
    # Look only once it has expired: consuming it earlier would use it up.
    clock.seconds = expiring_claims.expires

    async def expired_is_purged() -> bool:
        return await outcome_of(store, expiring_claims.token_id, clock.now()) == "not_found"

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
