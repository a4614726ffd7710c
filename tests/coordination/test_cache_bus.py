"""The cache bus: every replica hears every invalidation, the publisher at once."""

from __future__ import annotations

import asyncio

from tests.coordination.conftest import Replicas


class Heard:
    """An async subscriber that records paths and lets a test wait for one."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._changed = asyncio.Event()

    async def __call__(self, path: str) -> None:
        self.paths.append(path)
        self._changed.set()

    async def wait_for(self, path: str) -> None:
        async with asyncio.timeout(10):
            while path not in self.paths:
                self._changed.clear()
                await self._changed.wait()


async def test_every_subscriber_hears_a_publish(replicas: Replicas) -> None:
    publisher, other = replicas.buses()
    local: list[str] = []
    remote = Heard()
    await publisher.subscribe(local.append)
    await other.subscribe(remote)
    await publisher.publish("/docs/a.txt")
    assert local == ["/docs/a.txt"]
    await remote.wait_for("/docs/a.txt")
    assert remote.paths == ["/docs/a.txt"]


async def test_publisher_hears_its_own_publish_exactly_once(replicas: Replicas) -> None:
    publisher, other = replicas.buses()
    heard = Heard()
    await publisher.subscribe(heard)
    await publisher.publish("/mine")
    # Announcements reach a subscriber in publish order, so once the later one has
    # arrived, a round-tripped copy of the first would have too.
    await other.publish("/theirs")
    await heard.wait_for("/theirs")
    assert heard.paths == ["/mine", "/theirs"]


async def test_a_failing_subscriber_does_not_starve_the_others(replicas: Replicas) -> None:
    publisher, _ = replicas.buses()

    def broken(path: str) -> None:
        raise RuntimeError(path)

    heard: list[str] = []
    await publisher.subscribe(broken)
    await publisher.subscribe(heard.append)
    await publisher.publish("/x")
    await publisher.publish("/y")
    assert heard == ["/x", "/y"]


async def test_bus_answers_ping(replicas: Replicas) -> None:
    bus, _ = replicas.buses()
    await bus.ping()
