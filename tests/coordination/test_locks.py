"""Path locks: exclusive, bounded waits, owner tokens, expiry and renewal."""

from __future__ import annotations

import asyncio

import pytest

from callfs.coordination.base import Locks
from callfs.errors import LockTimeout
from tests.coordination.conftest import Replicas


async def test_second_acquirer_waits_until_release(replicas: Replicas) -> None:
    first, second = replicas.locks()
    token = await first.acquire("path:/a", timeout=1)
    waiting = asyncio.create_task(second.acquire("path:/a", timeout=10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await first.release("path:/a", token)
    other = await waiting
    assert other != token
    await second.release("path:/a", other)


async def test_acquire_on_a_held_key_raises_lock_timeout(replicas: Replicas) -> None:
    first, second = replicas.locks()
    await first.acquire("path:/a", timeout=1)
    with pytest.raises(LockTimeout):
        await second.acquire("path:/a", timeout=0.1)


async def test_different_keys_do_not_block_each_other(replicas: Replicas) -> None:
    first, second = replicas.locks()
    await first.acquire("path:/a", timeout=1)
    assert await second.acquire("path:/b", timeout=0)


async def test_release_with_a_wrong_token_keeps_the_lock(replicas: Replicas) -> None:
    first, second = replicas.locks()
    token = await first.acquire("path:/a", timeout=1)
    await second.release("path:/a", "not-the-owner")
    assert not await second.renew("path:/a", "not-the-owner")
    with pytest.raises(LockTimeout):
        await second.acquire("path:/a", timeout=0.05)
    assert await first.renew("path:/a", token)


async def test_lock_of_a_holder_that_never_releases_expires(replicas: Replicas) -> None:
    first, second = replicas.locks(ttl=0.5)
    stale = await first.acquire("path:/a", timeout=1)
    await replicas.lapse(0.6)
    fresh = await second.acquire("path:/a", timeout=0)
    assert fresh != stale
    assert not await first.renew("path:/a", stale)
    await first.release("path:/a", stale)
    with pytest.raises(LockTimeout):
        await first.acquire("path:/a", timeout=0)


class Renewals:
    """Counts the renewals of one lock adapter, so a test waits for one instead of sleeping."""

    def __init__(self, locks: Locks, monkeypatch: pytest.MonkeyPatch) -> None:
        self._started = 0
        self._finished = 0  # the number of the latest renewal to finish
        self._changed = asyncio.Condition()
        renew = locks.renew

        async def counted(key: str, token: str) -> bool:
            self._started += 1
            number = self._started
            try:
                return await renew(key, token)
            finally:
                async with self._changed:
                    self._finished = max(self._finished, number)
                    self._changed.notify_all()

        monkeypatch.setattr(locks, "renew", counted)

    async def next(self) -> None:
        """Wait for a renewal that starts from now on to finish (failing after 5 s)."""
        after = self._started
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: self._finished > after)


async def test_hold_renews_the_lock_past_its_ttl(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = replicas.locks(ttl=1.0)
    renewals = Renewals(first, monkeypatch)
    async with first.hold(["path:/a"], timeout=1):
        for _ in range(2):
            await replicas.lapse(0.6)
            await renewals.next()
        # 1.2 s on a 1 s lock: still held only because it was renewed.
        with pytest.raises(LockTimeout):
            await second.acquire("path:/a", timeout=0)
    token = await second.acquire("path:/a", timeout=1)
    await second.release("path:/a", token)


async def test_hold_releases_every_key_when_the_body_fails(replicas: Replicas) -> None:
    first, second = replicas.locks()
    with pytest.raises(RuntimeError):
        async with first.hold(["path:/a", "path:/b"], timeout=1):
            raise RuntimeError("body failed")
    assert await second.acquire("path:/a", timeout=0.5)
    assert await second.acquire("path:/b", timeout=0.5)


async def test_hold_keeps_every_key_only_while_held(replicas: Replicas) -> None:
    first, second = replicas.locks()
    async with first.hold(["path:/a", "path:/b"], timeout=1):
        for key in ("path:/a", "path:/b"):
            with pytest.raises(LockTimeout):
                await second.acquire(key, timeout=0.05)
    for key in ("path:/a", "path:/b"):
        await second.release(key, await second.acquire(key, timeout=0.5))


async def test_overlapping_holds_in_opposite_orders_do_not_deadlock(replicas: Replicas) -> None:
    first, second = replicas.locks()
    inside = 0
    most = 0

    async def worker(locks: Locks, keys: list[str]) -> None:
        nonlocal inside, most
        for _ in range(10):
            async with locks.hold(keys, timeout=10):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.002)
                inside -= 1

    async with asyncio.timeout(30):
        await asyncio.gather(
            worker(first, ["path:/a", "path:/b", "path:/c"]),
            worker(second, ["path:/c", "path:/b", "path:/a"]),
        )
    assert most == 1
