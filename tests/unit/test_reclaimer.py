"""The reclaimer's queue: bounded concurrency, failures left behind, idle and close."""

from __future__ import annotations

import asyncio

import pytest

from callfs.backends.base import Backend, ObjectRef
from callfs.errors import BackendUnavailable
from callfs.reclaimer import Reclaimer


class Recorder:
    """Removes nothing; records what it was asked, how many at once, and fails on cue."""

    def __init__(self, failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.failing = failing
        self.removed: list[str] = []
        self.running = self.most = 0

    async def delete(self, ref: ObjectRef) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0)
        self.running -= 1
        if ref.key in self.failing:
            raise BackendUnavailable("node gone")
        self.removed.append(ref.key)


def refs(count: int) -> list[ObjectRef]:
    return [ObjectRef("localfs", f"k{number:03}", ("node-0",)) for number in range(count)]


def reclaimer(backend: Recorder, *, concurrency: int, seen: list[int] | None = None) -> Reclaimer:
    def backend_of(name: str) -> Backend:
        assert name == "localfs"
        return backend  # type: ignore[return-value]

    return Reclaimer(
        backend_of, concurrency=concurrency, on_change=None if seen is None else seen.append
    )


async def test_every_object_goes_a_few_at_a_time_and_the_count_reaches_zero() -> None:
    backend = Recorder()
    seen: list[int] = []
    queue = reclaimer(backend, concurrency=3, seen=seen)
    queue.reclaim(refs(20))
    assert queue.pending == 20
    await queue.idle()
    assert sorted(backend.removed) == [ref.key for ref in refs(20)]
    assert backend.most == 3
    assert (seen[0], seen[-1], queue.pending) == (20, 0, 0)


async def test_a_failed_removal_is_logged_and_the_rest_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = Recorder(failing={"k001"})
    queue = reclaimer(backend, concurrency=2)
    queue.reclaim(refs(4))
    await queue.idle()
    assert backend.removed == ["k000", "k002", "k003"]
    assert "could not remove object k001 on node-0" in caplog.text


async def test_more_work_after_idle_starts_workers_again() -> None:
    backend = Recorder()
    queue = reclaimer(backend, concurrency=4)
    queue.reclaim(refs(2))
    await queue.idle()
    queue.reclaim(refs(5)[2:])
    await queue.idle()
    assert len(backend.removed) == 5


async def test_close_drops_what_is_queued_and_refuses_more() -> None:
    backend = Recorder()
    queue = reclaimer(backend, concurrency=1)
    queue.reclaim(refs(10))
    await queue.close()
    queue.reclaim(refs(3))
    await queue.idle()
    assert len(backend.removed) < 10 and queue.pending == 0
