"""Coordination across replicas through Redis: locks, GCRA rate limits, a pub/sub bus.

Redis holds only what may be lost. Each adapter owns the client it is given and
closes it in ``close()``; connection failures surface as ``BackendUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callfs import background
from callfs.coordination.base import CacheBus, Invalidation, Locks, RateLimiter
from callfs.coordination.inprocess import InProcessCacheBus
from callfs.coordination.renewal import renewing
from callfs.errors import BackendUnavailable, LockTimeout
from callfs.settings import DLMSettings

logger = logging.getLogger(__name__)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# GCRA on Redis's own clock, so every replica agrees on time. The key holds the
# theoretical arrival time in microseconds; the reply is the wait in microseconds.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
    tat = now
end
tat = tat + interval
local allowed_at = tat - burst * interval
if now < allowed_at then
    return math.ceil(allowed_at - now)
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 0
"""


def redis_client(settings: DLMSettings) -> aioredis.Redis:
    """A client for ``settings.redis_addr`` (``host:port`` or a ``redis://`` URL).

    A database or password inside the URL wins over ``redis_db``/``redis_password``.
    Retries once on a dropped connection, briefly, so an outage fails fast.

    Raises:
        ValueError: the port in ``redis_addr`` is not a number.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.25), retries=1),
    }
    password = settings.redis_password.get_secret_value()
    if password:
        options["password"] = password
    addr = settings.redis_addr.strip()
    if "://" in addr:
        return aioredis.Redis.from_url(addr, db=settings.redis_db, **options)
    host, _, port = addr.rpartition(":") if ":" in addr else (addr, ":", "6379")
    if not port.isdigit():
        raise ValueError(f"dlm.redis_addr: {addr!r} is not host:port or a redis:// URL")
    return aioredis.Redis(
        host=host.strip("[]") or "localhost", port=int(port), db=settings.redis_db, **options
    )


async def check_connectivity(settings: DLMSettings, timeout: float = 5.0) -> None:
    """Check that Redis at ``settings.redis_addr`` lets us in and answers PING
    (``config validate``).

    Raises:
        BackendUnavailable: saying where and why, never with the password.
    """
    addr = settings.redis_addr.strip()
    if "://" in addr:
        url = urlsplit(addr)
        addr = url._replace(netloc=url.netloc.rpartition("@")[2]).geturl()
    try:
        client = redis_client(settings)
    except ValueError as exc:
        raise BackendUnavailable(str(exc)) from None
    try:
        async with asyncio.timeout(timeout):
            await client.ping()
    except TimeoutError:
        raise BackendUnavailable(f"Redis at {addr}: no answer in {timeout:g}s") from None
    except (RedisError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise BackendUnavailable(f"Redis at {addr}: {reason}") from None
    finally:
        await client.aclose()


@contextlib.contextmanager
def _unavailable(service: str) -> Iterator[None]:
    """Translate Redis failures into ``BackendUnavailable("<service> unavailable")``."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BackendUnavailable(f"{service} unavailable") from exc


class RedisLocks(Locks):
    """``SET NX PX`` locks with random owner tokens, released and renewed by compare scripts."""

    def __init__(
        self, client: aioredis.Redis, *, ttl: float, key_prefix: str = "callfs:lock:"
    ) -> None:
        self._client = client
        self._ttl_ms = max(1, round(ttl * 1000))
        self._ttl = ttl
        self._prefix = key_prefix
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    async def acquire(self, key: str, *, timeout: float) -> str:
        """Poll for ``key`` with short jittered sleeps for up to ``timeout`` seconds.

        Raises:
            LockTimeout: the key stayed held.
            BackendUnavailable: Redis does not answer.
        """
        token = secrets.token_hex(16)
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            if await self._try(key, token):
                return token
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout()
            pause = min(pause * 1.5, 0.1)
            await asyncio.sleep(min(remaining, random.uniform(pause / 2, pause)))

    async def _try(self, key: str, token: str) -> bool:
        try:
            with _unavailable("lock service"):
                return bool(
                    await self._client.set(self._prefix + key, token, nx=True, px=self._ttl_ms)
                )
        except asyncio.CancelledError:
            # The SET may have landed before the cancellation: give the lock back.
            with contextlib.suppress(Exception):
                await self._release(keys=[self._prefix + key], args=[token])
            raise

    async def release(self, key: str, token: str) -> None:
        """Delete ``key`` if ``token`` still owns it.

        An unreachable Redis is logged, not raised: the lock expires by itself.
        """
        try:
            await self._release(keys=[self._prefix + key], args=[token])
        except (RedisError, OSError) as exc:
            logger.warning("could not release the lock on %s (it will expire): %s", key, exc)

    async def renew(self, key: str, token: str) -> bool:
        """Reset the expiry of ``key`` to ``ttl``; False when ``token`` no longer owns it.

        Raises:
            BackendUnavailable: Redis does not answer.
        """
        with _unavailable("lock service"):
            return bool(await self._renew(keys=[self._prefix + key], args=[token, self._ttl_ms]))

    @contextlib.asynccontextmanager
    async def _renewing(self, held: list[tuple[str, str]]) -> AsyncIterator[None]:
        async with renewing(self, held, every=self._ttl / 3):
            yield

    async def close(self) -> None:
        """Close the client."""
        await self._client.aclose()


class RedisRateLimiter(RateLimiter):
    """GCRA buckets evaluated by one atomic script, so the limit holds across replicas."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str = "callfs:rl:") -> None:
        self._client = client
        self._prefix = key_prefix
        self._gcra = client.register_script(_GCRA)

    async def hit(self, key: str, *, rate: float, burst: int) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is free.

        Raises:
            BackendUnavailable: Redis does not answer.
        """
        interval = 1_000_000 / rate
        with _unavailable("rate limit service"):
            wait = await self._gcra(keys=[self._prefix + key], args=[interval, max(burst, 1)])
        return int(wait) / 1_000_000

    async def close(self) -> None:
        """Close the client."""
        await self._client.aclose()


class RedisCacheBus(CacheBus):
    """Invalidations over a Redis channel; this process's subscribers are called directly.

    A background task listens on a pub/sub connection and reconnects with backoff
    when Redis drops. While it is cut off, announcements from other replicas are lost:
    it announces ``/`` locally and reports ``connected`` False at once, and once
    subscribed again it announces ``/`` (everything may have changed meanwhile) before
    reporting True.
    """

    def __init__(self, client: aioredis.Redis, *, channel: str = "callfs:invalidate") -> None:
        self._client = client
        self._channel = channel
        self._origin = secrets.token_hex(16)
        self._local = InProcessCacheBus()
        self._listener: asyncio.Task[None] | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def _reset(self, *, connected: bool) -> None:
        """Drop every cached entry here, then say whether announcements arrive again."""
        self._connected = False
        await self._local.publish("/")
        self._connected = connected

    async def publish(self, path: str) -> None:
        """Call this process's subscribers, then tell every other replica.

        Raises:
            BackendUnavailable: Redis does not answer.
        """
        await self._local.publish(path)
        with _unavailable("cache bus"):
            await self._client.publish(self._channel, f"{self._origin} {path}")

    async def subscribe(self, callback: Invalidation) -> None:
        """Call ``callback(path)`` for every announcement from now on.

        Raises:
            BackendUnavailable: the first subscription to Redis failed.
        """
        await self._local.subscribe(callback)
        if self._listener is not None:
            return
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._listener = asyncio.create_task(self._listen(ready), name="callfs-cache-bus")
        try:
            await ready
        except BaseException as exc:
            await self._stop_listening()
            self._local.discard(callback)
            if isinstance(exc, RedisError | OSError):
                raise BackendUnavailable("cache bus unavailable") from exc
            raise

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        """Deliver other replicas' announcements; reconnect with backoff when Redis drops."""
        delay = 0.1
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                if await pubsub.get_message(timeout=5.0) is None:
                    raise RedisTimeoutError("Redis did not confirm the subscription")
                delay = 0.1
                if ready.done():
                    logger.info("cache bus reconnected; invalidating everything")
                    await self._reset(connected=True)
                else:
                    self._connected = True
                    ready.set_result(None)
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        await self._deliver(message["data"])
                    elif message["type"] == "subscribe":
                        # redis-py reconnected and subscribed again by itself.
                        logger.info("cache bus resubscribed; invalidating everything")
                        await self._reset(connected=True)
            except (RedisError, OSError) as exc:
                was_connected, self._connected = self._connected, False
                if not ready.done():
                    ready.set_exception(exc)
                    return
                if was_connected:
                    # Once per outage; each failed reconnect after it is only DEBUG.
                    logger.warning("cache bus lost its Redis connection: %s", exc)
                    await self._reset(connected=False)
                else:
                    logger.debug("cache bus still cannot reach Redis: %s", exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 5.0)

    async def _stop_listening(self) -> None:
        self._connected = False
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await background.stop(listener)

    async def _deliver(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        origin, _, path = text.partition(" ")
        if origin == self._origin:
            return
        if len(origin) != 32 or not path:
            # Not one of ours: the whole message is the path.
            path = text
        await self._local.publish(path)

    async def ping(self) -> None:
        """Raise BackendUnavailable unless Redis answers."""
        with _unavailable("cache bus"):
            await self._client.ping()

    async def close(self) -> None:
        """Stop listening, forget subscribers and close the client."""
        await self._stop_listening()
        await self._local.close()
        await self._client.aclose()
