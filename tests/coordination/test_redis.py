"""What only the Redis adapters do: connect from settings, reconnect, fail as 503."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from callfs.coordination import build_coordination
from callfs.coordination.inprocess import InProcessCacheBus, InProcessLocks, InProcessRateLimiter
from callfs.coordination.redis import (
    RedisCacheBus,
    RedisLocks,
    RedisRateLimiter,
    check_connectivity,
    redis_client,
)
from callfs.errors import BackendUnavailable, LockTimeout
from callfs.settings import DLMSettings
from tests.coordination.test_cache_bus import Heard
from tests.support.servers import RedisServer, free_port, silent_port


def settings_for(addr: str, **extra: object) -> DLMSettings:
    return DLMSettings.model_validate({"type": "redis", "redis_addr": addr, **extra})


@pytest.mark.parametrize("form", ["host:port", "url"])
async def test_redis_client_accepts_host_port_and_url(redis_url: str, form: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    addr = f"127.0.0.1:{port}" if form == "host:port" else redis_url
    client = redis_client(settings_for(addr))
    try:
        assert await client.ping()
    finally:
        await client.aclose()


async def test_redis_client_uses_the_configured_database(redis_url: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    on_two = redis_client(settings_for(f"127.0.0.1:{port}", redis_db=2))
    on_zero = redis_client(settings_for(f"127.0.0.1:{port}"))
    try:
        await on_two.set("marker", "2")
        assert await on_zero.get("marker") is None
        assert await on_two.get("marker") == b"2"
    finally:
        await on_two.aclose()
        await on_zero.aclose()


async def test_build_coordination_picks_adapters_by_type(redis_url: str) -> None:
    local = build_coordination(DLMSettings(type="local"))
    remote = build_coordination(settings_for(redis_url))
    try:
        assert [type(adapter) for adapter in local] == [
            InProcessLocks,
            InProcessRateLimiter,
            InProcessCacheBus,
        ]
        assert [type(adapter) for adapter in remote] == [
            RedisLocks,
            RedisRateLimiter,
            RedisCacheBus,
        ]
        await remote[2].ping()
    finally:
        for adapter in (*local, *remote):
            await adapter.close()


async def test_locks_live_under_their_key_prefix(redis_url: str) -> None:
    locks = RedisLocks(redis_client(settings_for(redis_url)), ttl=5)
    inspector = aioredis.Redis.from_url(redis_url)
    try:
        token = await locks.acquire("path:/a", timeout=1)
        assert await inspector.get("callfs:lock:path:/a") == token.encode()
        assert 0 < await inspector.pttl("callfs:lock:path:/a") <= 5000
        await locks.release("path:/a", token)
        assert await inspector.exists("callfs:lock:path:/a") == 0
    finally:
        await locks.close()
        await inspector.aclose()


async def test_bus_invalidates_everything_after_reconnecting(redis_url: str) -> None:
    subscriber = RedisCacheBus(redis_client(settings_for(redis_url)))
    publisher = RedisCacheBus(redis_client(settings_for(redis_url)))
    admin = aioredis.Redis.from_url(redis_url)
    heard = Heard()
    try:
        await subscriber.subscribe(heard)
        assert await admin.client_kill_filter(_type="pubsub") >= 1
        await heard.wait_for("/")
        await publisher.publish("/after")
        await heard.wait_for("/after")
        assert heard.paths == ["/", "/after"]
    finally:
        await subscriber.close()
        await publisher.close()
        await admin.aclose()


async def test_bus_takes_foreign_messages_as_paths(redis_url: str) -> None:
    bus = RedisCacheBus(redis_client(settings_for(redis_url)))
    admin = aioredis.Redis.from_url(redis_url)
    heard = Heard()
    try:
        await bus.subscribe(heard)
        await admin.publish("callfs:invalidate", "/from elsewhere")
        await heard.wait_for("/from elsewhere")
    finally:
        await bus.close()
        await admin.aclose()


async def test_stopped_redis_is_backend_unavailable() -> None:
    with RedisServer() as server:
        settings = settings_for(server.url)
        locks = RedisLocks(redis_client(settings), ttl=5)
        limiter = RedisRateLimiter(redis_client(settings))
        bus = RedisCacheBus(redis_client(settings))
        late_bus = RedisCacheBus(redis_client(settings))
        heard = Heard()
        try:
            token = await locks.acquire("path:/a", timeout=1)
            await bus.subscribe(heard)
            server.stop()

            with pytest.raises(BackendUnavailable) as failure:
                await locks.acquire("path:/b", timeout=1)
            assert not isinstance(failure.value, LockTimeout)
            assert failure.value.message == "lock service unavailable"
            with pytest.raises(BackendUnavailable):
                await locks.renew("path:/a", token)
            await locks.release("path:/a", token)  # logged, not raised: the lock expires
            with pytest.raises(BackendUnavailable):
                await limiter.hit("user:alice", rate=10, burst=1)
            with pytest.raises(BackendUnavailable):
                await bus.publish("/x")
            # Local subscribers still hear it; "/" is the bus dropping caches as Redis went.
            assert [path for path in heard.paths if path != "/"] == ["/x"]
            with pytest.raises(BackendUnavailable):
                await bus.ping()
            with pytest.raises(BackendUnavailable):
                await late_bus.subscribe(heard)
        finally:
            for adapter in (locks, limiter, bus, late_bus):
                await adapter.close()


async def test_hold_logs_a_lost_lock_and_lets_the_body_finish(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    locks = RedisLocks(redis_client(settings_for(redis_url)), ttl=0.3)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        async with locks.hold(["path:/a"], timeout=1):
            await admin.delete("callfs:lock:path:/a")
            await asyncio.sleep(0.3)
        assert "lost the lock on path:/a" in caplog.text
    finally:
        await locks.close()
        await admin.aclose()


def test_redis_client_rejects_an_address_without_a_port_number() -> None:
    with pytest.raises(ValueError, match=r"dlm\.redis_addr"):
        redis_client(settings_for("redis-host:six"))


# --- config validate --check-connectivity ----------------------------------------------


async def test_check_connectivity_passes_when_redis_answers(redis_url: str) -> None:
    await check_connectivity(settings_for(redis_url), timeout=5)


async def test_check_connectivity_names_where_without_the_password() -> None:
    port = free_port()
    settings = settings_for(f"redis://:hunter2@127.0.0.1:{port}/0", redis_password="other-pw")
    with pytest.raises(BackendUnavailable) as caught:
        await check_connectivity(settings)
    message = str(caught.value)
    assert message.startswith(f"Redis at redis://127.0.0.1:{port}/0: ")
    assert "hunter2" not in message and "other-pw" not in message


async def test_check_connectivity_gives_up_on_a_server_that_never_answers() -> None:
    with silent_port() as port, pytest.raises(BackendUnavailable) as caught:
        await check_connectivity(settings_for(f"127.0.0.1:{port}"), timeout=0.5)
    assert str(caught.value) == f"Redis at 127.0.0.1:{port}: no answer in 0.5s"
