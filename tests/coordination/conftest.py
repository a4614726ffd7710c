"""Fixtures for the coordination suite: each behaviour runs in-process and on real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from callfs.coordination.base import CacheBus, Locks, RateLimiter
from callfs.coordination.inprocess import InProcessCacheBus, InProcessLocks, InProcessRateLimiter
from callfs.coordination.redis import RedisCacheBus, RedisLocks, RedisRateLimiter, redis_client
from callfs.settings import DLMSettings
from tests.support.clock import ManualClock


@dataclass
class Replicas:
    """Two replicas' handles on one coordination service.

    In-process, both handles are the same object (the process is the service) and
    tell time by :attr:`clock`; on Redis, each replica gets its own adapter on its own
    client, and time is the server's.
    """

    kind: str
    redis_url: str = ""
    clock: ManualClock = field(default_factory=ManualClock)
    _opened: list[Any] = field(default_factory=list)

    async def lapse(self, seconds: float) -> None:
        """Let ``seconds`` pass for lock expiry and rate limits: in-process the clock moves
        at once; Redis keeps time itself, so there they pass for real."""
        if self.kind == "inprocess":
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    def _client(self) -> Any:
        return redis_client(DLMSettings(type="redis", redis_addr=self.redis_url))

    def _pair(self, make: Any) -> tuple[Any, Any]:
        if self.kind == "inprocess":
            one = make()
            self._opened.append(one)
            return one, one
        first, second = make(), make()
        self._opened += [first, second]
        return first, second

    def locks(self, *, ttl: float = 10.0) -> tuple[Locks, Locks]:
        if self.kind == "inprocess":
            return self._pair(lambda: InProcessLocks(ttl=ttl, clock=self.clock))
        return self._pair(lambda: RedisLocks(self._client(), ttl=ttl))

    def limiters(self) -> tuple[RateLimiter, RateLimiter]:
        if self.kind == "inprocess":
            return self._pair(lambda: InProcessRateLimiter(clock=self.clock))
        return self._pair(lambda: RedisRateLimiter(self._client()))

    def buses(self) -> tuple[CacheBus, CacheBus]:
        if self.kind == "inprocess":
            return self._pair(InProcessCacheBus)
        return self._pair(lambda: RedisCacheBus(self._client()))

    async def close(self) -> None:
        for adapter in self._opened:
            await adapter.close()


@pytest.fixture(params=["inprocess", "redis"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    """Coordination handles for two replicas, in-process and on the session Redis."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    opened = Replicas(request.param, url)
    yield opened
    await opened.close()
