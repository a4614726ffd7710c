"""The coordination interfaces that Redis and the in-process adapters implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager


class Locks(ABC):
    """Exclusive locks on path keys, with expiry and owner tokens."""

    @abstractmethod
    async def acquire(self, key: str, *, timeout: float) -> str:
        """Wait up to ``timeout`` seconds for ``key``; return the owner token.

        Raises:
            LockTimeout: the key stayed held.
            BackendUnavailable: the lock service does not answer.
        """

    @abstractmethod
    async def release(self, key: str, token: str) -> None:
        """Release ``key`` if ``token`` still owns it (compare-and-delete)."""

    @abstractmethod
    async def renew(self, key: str, token: str) -> bool:
        """Push the expiry of a held lock forward; False when it was lost."""

    @asynccontextmanager
    async def hold(self, keys: Sequence[str], *, timeout: float) -> AsyncIterator[None]:
        """Hold every key (taken in sorted order, so two holders never deadlock).

        Implementations renew the locks in the background while the block runs.
        """
        taken: list[tuple[str, str]] = []
        try:
            for key in sorted(set(keys)):
                taken.append((key, await self.acquire(key, timeout=timeout)))
            async with self._renewing(taken):
                yield
        finally:
            for key, token in reversed(taken):
                await self.release(key, token)

    @asynccontextmanager
    async def _renewing(self, held: list[tuple[str, str]]) -> AsyncIterator[None]:
        """Keep ``held`` alive while the body runs (no-op for adapters without expiry)."""
        yield

    async def close(self) -> None:
        """Release connections."""


class RateLimiter(ABC):
    """A token bucket per key that holds across every replica sharing the backend."""

    @abstractmethod
    async def hit(self, key: str, *, rate: float, burst: int) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is free."""

    async def close(self) -> None:
        """Release connections."""


Invalidation = Callable[[str], Awaitable[None] | None]


class CacheBus(ABC):
    """Tells every replica that a path (and everything below it) changed.

    ``connected`` is False while announcements from other replicas may be missed (a
    Redis connection lost and not yet subscribed again). A cache must not serve then:
    the bus announces ``/`` when the link drops and again once it is back, before
    ``connected`` turns True.
    """

    @property
    def connected(self) -> bool:
        """Whether every announcement from now on reaches this process's subscribers."""
        return True

    @abstractmethod
    async def publish(self, path: str) -> None:
        """Announce a change of ``path`` to every subscriber, this process included."""

    @abstractmethod
    async def subscribe(self, callback: Invalidation) -> None:
        """Call ``callback(path)`` for every announcement from now on."""

    async def close(self) -> None:
        """Stop listening and release connections."""

    async def ping(self) -> None:
        """Raise BackendUnavailable unless the bus answers."""
