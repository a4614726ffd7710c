"""Coordination inside one process: asyncio locks, token buckets and a local bus.

The embedded default (``dlm.type: local``) for ``callfs dev`` and single-replica use.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from callfs.coordination.base import CacheBus, Invalidation, Locks, RateLimiter
from callfs.coordination.renewal import renewing
from callfs.errors import LockTimeout

logger = logging.getLogger(__name__)


@dataclass
class _Hold:
    token: str
    expires: float


class InProcessLocks(Locks):
    """Exclusive locks with owner tokens that expire ``ttl`` seconds after the last renewal.

    Expiry goes by ``clock`` (monotonic seconds); how long ``acquire`` waits goes by the
    event loop's own time, whatever ``clock`` says.
    """

    def __init__(self, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self.clock = clock
        self._held: dict[str, _Hold] = {}
        self._changed = asyncio.Condition()

    async def acquire(self, key: str, *, timeout: float) -> str:
        """Wait up to ``timeout`` seconds for ``key``; return the owner token.

        Raises:
            LockTimeout: the key stayed held.
        """
        token = secrets.token_hex(16)
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                now = self.clock()
                current = self._held.get(key)
                if current is None or current.expires <= now:
                    self._held[key] = _Hold(token, now + self._ttl)
                    return token
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockTimeout()
                # Wake on a release, or when the holder's lock runs out.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, current.expires - now)):
                        await self._changed.wait()

    async def release(self, key: str, token: str) -> None:
        """Release ``key`` if ``token`` still owns it."""
        async with self._changed:
            current = self._held.get(key)
            if current is not None and current.token == token:
                del self._held[key]
                self._changed.notify_all()

    async def renew(self, key: str, token: str) -> bool:
        """Push the expiry of a held lock ``ttl`` seconds ahead; False when it was lost."""
        now = self.clock()
        current = self._held.get(key)
        if current is None or current.token != token or current.expires <= now:
            return False
        current.expires = now + self._ttl
        return True

    @contextlib.asynccontextmanager
    async def _renewing(self, held: list[tuple[str, str]]) -> AsyncIterator[None]:
        async with renewing(self, held, every=self._ttl / 3):
            yield


class InProcessRateLimiter(RateLimiter):
    """GCRA token buckets kept in memory: ``burst`` tokens refilled at ``rate`` per second
    of ``clock`` (monotonic seconds)."""

    _SWEEP_EVERY = 1024

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # key -> theoretical arrival time of the next request (clock seconds)
        self._tat: dict[str, float] = {}
        self._hits = 0

    async def hit(self, key: str, *, rate: float, burst: int) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is free."""
        now = self.clock()
        interval = 1.0 / rate
        tat = max(self._tat.get(key, now), now) + interval
        allowed_at = tat - max(burst, 1) * interval
        if now < allowed_at:
            return allowed_at - now
        self._tat[key] = tat
        self._hits += 1
        if self._hits % self._SWEEP_EVERY == 0:
            self._tat = {name: due for name, due in self._tat.items() if due > now}
        return 0.0


class InProcessCacheBus(CacheBus):
    """Calls every subscriber for every publish, in this process only."""

    def __init__(self) -> None:
        self._callbacks: list[Invalidation] = []

    async def publish(self, path: str) -> None:
        """Call every subscriber with ``path``; one failing subscriber does not stop the rest."""
        for callback in list(self._callbacks):
            try:
                result = callback(path)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("cache invalidation subscriber failed for %s", path)

    async def subscribe(self, callback: Invalidation) -> None:
        """Call ``callback(path)`` for every publish from now on."""
        self._callbacks.append(callback)

    def discard(self, callback: Invalidation) -> None:
        """Stop calling ``callback`` (nothing happens if it was not subscribed)."""
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    async def close(self) -> None:
        """Forget every subscriber."""
        self._callbacks.clear()
