"""The metadata cache: hits, expiry, eviction, and invalidation across replicas.

Two replicas are two cached stores over the same database, joined by one cache bus.
Rows are changed "behind the cache's back" through a bare store on the same
database, which announces nothing: a replica that still answers the old row
served it from its cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from callfs.coordination.base import CacheBus
from callfs.coordination.inprocess import InProcessCacheBus
from callfs.coordination.redis import RedisCacheBus, redis_client
from callfs.entry import Entry
from callfs.errors import EntryChanged
from callfs.metadata.base import MetadataStore
from callfs.metadata.cache import CachedMetadataStore
from callfs.settings import DLMSettings
from tests.metadata.conftest import StoreTarget
from tests.metadata.entries import directory, file
from tests.metadata.test_links import NOW, link
from tests.support.polling import wait_until
from tests.support.servers import RedisInstance, RedisServer, free_port

TTL = 60.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Replicas:
    """Two cached replicas, the bare store behind them, their bus and counters."""

    target: StoreTarget
    bus: CacheBus
    clock: Clock
    bare: MetadataStore
    opened: list[MetadataStore] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)
    misses: list[int] = field(default_factory=list)

    async def replica(self, *, ttl: float = TTL, size: int = 100) -> CachedMetadataStore:
        cached = CachedMetadataStore(
            self.target.build(),
            self.bus,
            ttl=ttl,
            size=size,
            on_hit=lambda: self.hits.append(1),
            on_miss=lambda: self.misses.append(1),
            clock=self.clock,
        )
        await cached.open()
        self.opened.append(cached)
        return cached

    async def behind_the_back(self, path: str, **changes: object) -> Entry:
        """Change a row without telling any cache; return the new row."""
        current = await self.bare.get(path)
        assert current is not None
        changed = current.evolve(**changes)
        await self.bare.update(changed)
        return changed


@pytest.fixture
async def replicas(store_target: StoreTarget) -> AsyncIterator[Replicas]:
    bare = store_target.build()
    await bare.open()
    bus = InProcessCacheBus()
    group = Replicas(store_target, bus, Clock(), bare)
    try:
        yield group
    finally:
        for opened in group.opened:
            await opened.close()
        await bus.close()
        await bare.close()


async def seed(store: MetadataStore) -> None:
    await store.create(directory("/a"))
    await store.create(file("/a/x"))
    await store.create(file("/a/y/deep"), [directory("/a/y")])
    await store.create(file("/ab"))
    await store.create(file("/a-b"))


async def test_repeated_get_is_served_from_the_cache(replicas: Replicas) -> None:
    cache = await replicas.replica()
    await seed(cache)
    first = await cache.get("/a/x")
    await replicas.behind_the_back("/a/x", size=99)
    assert await cache.get("/a/x") == first
    assert (len(replicas.misses), len(replicas.hits)) == (1, 1)


async def test_update_through_one_replica_reaches_the_other(replicas: Replicas) -> None:
    one, two = await replicas.replica(), await replicas.replica()
    await seed(one)
    assert await two.get("/a/x") == file("/a/x")
    await one.update(file("/a/x", size=42))
    assert await two.get("/a/x") == file("/a/x", size=42)


async def test_set_replicas_through_one_replica_reaches_the_other(replicas: Replicas) -> None:
    one, two = await replicas.replica(), await replicas.replica()
    await seed(one)
    assert await two.get("/a/x") == file("/a/x")
    holders = ("node-2", "node-0")
    assert await one.set_replicas("/a/x", "key-a-x", holders) is True
    found = await two.get("/a/x")
    assert found == file("/a/x", instance_id="node-2", replicas=holders)
    assert found is not None and found.holders == holders


async def test_move_through_one_replica_drops_the_subtree_on_the_other(
    replicas: Replicas,
) -> None:
    one, two = await replicas.replica(), await replicas.replica()
    await seed(one)
    for path in ("/a", "/a/x", "/a/y/deep"):
        assert await two.get(path) is not None
    await one.move("/a", "/moved")
    assert [await two.get(path) for path in ("/a", "/a/x", "/a/y/deep")] == [None] * 3
    assert await two.get("/moved/y/deep") == file("/moved/y/deep", object_key="key-a-y-deep")


async def test_delete_through_one_replica_reaches_the_other(replicas: Replicas) -> None:
    one, two = await replicas.replica(), await replicas.replica()
    await seed(one)
    assert await two.get("/ab") is not None and await two.get("/a/y/deep") is not None
    await one.delete("/ab")
    await one.delete_tree("/a")
    assert await two.get("/ab") is None
    assert await two.get("/a/y/deep") is None
    assert await two.get("/a-b") is not None


async def test_announcement_drops_the_path_and_below_but_not_prefix_siblings(
    replicas: Replicas,
) -> None:
    cache = await replicas.replica()
    await seed(cache)
    paths = ["/a", "/a/x", "/a/y/deep", "/ab", "/a-b"]
    before = {path: await cache.get(path) for path in paths}
    after = {path: await replicas.behind_the_back(path, mode=0o700) for path in paths}
    await replicas.bus.publish("/a")
    now = {path: await cache.get(path) for path in paths}
    assert now == {
        "/a": after["/a"],
        "/a/x": after["/a/x"],
        "/a/y/deep": after["/a/y/deep"],
        "/ab": before["/ab"],
        "/a-b": before["/a-b"],
    }


async def test_announcing_the_root_drops_everything(replicas: Replicas) -> None:
    cache = await replicas.replica()
    await seed(cache)
    await cache.get("/ab")
    await cache.get("/a/x")
    assert len(cache) == 2
    await replicas.bus.publish("/")
    assert len(cache) == 0


async def test_missing_paths_are_not_cached(replicas: Replicas) -> None:
    cache = await replicas.replica()
    assert await cache.get("/later") is None
    await replicas.bare.create(file("/later"))
    assert await cache.get("/later") == file("/later")


async def test_entries_expire_after_the_ttl(replicas: Replicas) -> None:
    cache = await replicas.replica(ttl=30)
    await seed(cache)
    first = await cache.get("/ab")
    changed = await replicas.behind_the_back("/ab", size=7)
    replicas.clock.now += 29
    assert await cache.get("/ab") == first
    replicas.clock.now += 1
    assert await cache.get("/ab") == changed


async def test_least_recently_used_entry_is_evicted_first(replicas: Replicas) -> None:
    cache = await replicas.replica(size=2)
    await seed(cache)
    old_x = await cache.get("/a/x")
    await cache.get("/ab")
    await cache.get("/a/x")
    old_ab_b = await cache.get("/a-b")  # evicts /ab, the least recently used
    new = {path: await replicas.behind_the_back(path, size=5) for path in ("/a/x", "/ab", "/a-b")}
    assert len(cache) == 2
    assert await cache.get("/a/x") == old_x
    assert await cache.get("/a-b") == old_ab_b
    assert await cache.get("/ab") == new["/ab"]


@pytest.mark.parametrize(("ttl", "size"), [(0, 100), (TTL, 0)])
async def test_zero_ttl_or_size_turns_caching_off(
    replicas: Replicas, ttl: float, size: int
) -> None:
    cache = await replicas.replica(ttl=ttl, size=size)
    await seed(cache)
    await cache.get("/ab")
    changed = await replicas.behind_the_back("/ab", size=11)
    assert await cache.get("/ab") == changed
    assert await cache.get_many(["/ab"]) == {"/ab": changed}
    assert len(cache) == 0 and replicas.hits == [] and replicas.misses == []


async def test_get_many_serves_and_fills_the_cache(replicas: Replicas) -> None:
    cache = await replicas.replica()
    await seed(cache)
    first = await cache.get_many(["/a", "/ab", "/nope"])
    assert sorted(first) == ["/a", "/ab"]
    assert len(replicas.misses) == 3
    await replicas.behind_the_back("/ab", size=1)
    assert await cache.get("/ab") == first["/ab"]
    again = await cache.get_many(["/a", "/ab"])
    assert again == first
    assert len(replicas.hits) == 3


async def test_a_failed_mutation_still_drops_the_local_entry(replicas: Replicas) -> None:
    cache = await replicas.replica()
    await seed(cache)
    await cache.get("/ab")
    changed = await replicas.behind_the_back("/ab", etag="v2")
    with pytest.raises(EntryChanged):
        await cache.update(file("/ab", etag="v3"), expected=file("/ab", etag="stale"))
    assert await cache.get("/ab") == changed


async def test_mutations_are_announced_on_the_bus(replicas: Replicas) -> None:
    heard: list[str] = []
    await replicas.bus.subscribe(heard.append)
    cache = await replicas.replica()
    await cache.create(file("/f"))
    await cache.update(file("/f", size=1))
    await cache.move("/f", "/g")
    await cache.delete("/g")
    await cache.create(file("/t/f"), [directory("/t")])
    await cache.delete_tree("/t")
    assert heard == ["/f", "/f", "/f", "/g", "/g", "/t/f", "/t"]


async def test_links_pass_through_uncached(replicas: Replicas) -> None:
    cache = await replicas.replica()
    await cache.create_link(link("t1"))
    assert (await cache.consume_link("t1", NOW))[0] == "consumed"
    await cache.release_link("t1")
    assert (await replicas.bare.consume_link("t1", NOW))[0] == "consumed"
    assert await cache.purge_links(NOW, 10) == 0
    assert await cache.purge_links(NOW + timedelta(hours=1), 10) == 1


async def test_mutation_succeeds_when_the_bus_cannot_announce(
    store_target: StoreTarget,
) -> None:
    dead = RedisCacheBus(redis_client(DLMSettings(redis_addr=f"127.0.0.1:{free_port()}")))
    # ttl 0: no subscription needed, but every mutation is still announced.
    cache = CachedMetadataStore(store_target.build(), dead, ttl=0, size=0)
    await cache.open()
    try:
        await cache.create(file("/f"))
        assert await cache.get("/f") == file("/f")
    finally:
        await cache.close()
        await dead.close()


async def test_replicas_on_redis_invalidate_each_other(
    store_target: StoreTarget, redis_url: str
) -> None:
    buses = [RedisCacheBus(redis_client(DLMSettings(redis_addr=redis_url))) for _ in range(2)]
    one, two = (CachedMetadataStore(store_target.build(), bus, ttl=TTL, size=100) for bus in buses)
    await one.open()
    await two.open()
    heard: list[str] = []
    both_heard = asyncio.Event()

    def hear(path: str) -> None:
        heard.append(path)
        if len(heard) == 2:
            both_heard.set()

    # Subscribed after ``two``, so ``two`` has dropped the path when this hears it.
    await buses[1].subscribe(hear)
    try:
        await one.create(file("/f"))
        assert await two.get("/f") == file("/f")
        await one.update(file("/f", size=77))
        await asyncio.wait_for(both_heard.wait(), 10)
        assert heard == ["/f", "/f"]
        assert await two.get("/f") == file("/f", size=77)
    finally:
        await one.close()
        await two.close()
        for bus in buses:
            await bus.close()


async def test_a_replica_cut_off_from_the_bus_serves_from_the_store_until_it_is_back(
    replicas: Replicas,
) -> None:
    """Announcements sent while the bus is down are lost: the cache must not serve then,
    and what it held before must not come back once the bus reconnects."""
    with RedisServer() as own_redis:
        bus = RedisCacheBus(redis_client(DLMSettings(redis_addr=own_redis.url)))
        cache = CachedMetadataStore(replicas.target.build(), bus, ttl=TTL, size=100)
        await cache.open()
        try:
            await seed(cache)
            await cache.get("/ab")
            assert bus.connected

            own_redis.halt()
            await wait_until(lambda: not bus.connected, what="the bus noticing Redis is gone")
            during = await replicas.behind_the_back("/ab", size=11)
            assert await cache.get("/ab") == during
            assert (await cache.get_many(["/a", "/ab"]))["/ab"] == during
            assert len(cache) == 0

            own_redis.resume()
            await wait_until(lambda: bus.connected, what="the bus subscribing again")
            after = await replicas.behind_the_back("/ab", size=12)
            assert await cache.get("/ab") == after
            # Connected again: the cache serves (a change behind its back stays unseen).
            await replicas.behind_the_back("/ab", size=13)
            assert await cache.get("/ab") == after
        finally:
            await cache.close()
            await bus.close()


async def test_a_bus_that_resubscribes_drops_what_was_cached_before(
    replicas: Replicas, redis_url: str
) -> None:
    """redis-py may reconnect and resubscribe by itself: the cache is dropped whole then."""
    bus = RedisCacheBus(redis_client(DLMSettings(redis_addr=redis_url)))
    cache = CachedMetadataStore(replicas.target.build(), bus, ttl=TTL, size=100)
    await cache.open()
    try:
        await seed(cache)
        await cache.get("/ab")
        await cache.get("/a")
        assert len(cache) == 2
        with RedisInstance(redis_url).client() as admin:
            assert admin.client_kill_filter(_type="pubsub") >= 1
        await wait_until(lambda: len(cache) == 0, what="the cache being dropped")
        await wait_until(lambda: bus.connected, what="the bus subscribing again")
        changed = await replicas.behind_the_back("/ab", size=21)
        assert await cache.get("/ab") == changed
    finally:
        await cache.close()
        await bus.close()
