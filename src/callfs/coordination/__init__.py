"""What replicas coordinate through: path locks, rate limits and cache invalidation."""

from __future__ import annotations

from callfs.coordination.base import CacheBus, Locks, RateLimiter
from callfs.coordination.inprocess import InProcessCacheBus, InProcessLocks, InProcessRateLimiter
from callfs.settings import DLMSettings


def build_coordination(settings: DLMSettings) -> tuple[Locks, RateLimiter, CacheBus]:
    """The locks, rate limiter and cache bus ``settings.type`` asks for (not yet connected).

    The Redis client is imported only for ``redis``: embedded, nothing of it is loaded
    (nor what it loads itself, such as OpenTelemetry's SDK when that is installed).
    """
    if settings.type == "local":
        return InProcessLocks(ttl=settings.lock_ttl), InProcessRateLimiter(), InProcessCacheBus()
    from callfs.coordination.redis import RedisCacheBus, RedisLocks, RedisRateLimiter, redis_client

    return (
        RedisLocks(redis_client(settings), ttl=settings.lock_ttl),
        RedisRateLimiter(redis_client(settings)),
        RedisCacheBus(redis_client(settings)),
    )
