"""The reclaimer's queue: batches of one backend, bounded concurrency, failures left
behind, idle and close."""

from __future__ import annotations

import asyncio

import pytest

from callfs.backends.base import Backend, ObjectRef
from callfs.entry import BackendName
from callfs.errors import BackendUnavailable, CallFSError
from callfs.reclaimer import Reclaimer


class Recorder:
    """Removes nothing; records what it was asked, in which batches, how many batches
    at once, and fails on cue (one object, or a whole batch)."""

    def __init__(self, failing: set[str] = frozenset(), broken: bool = False) -> None:  # type: ignore[assignment]
        self.failing = failing
        self.broken = broken
        self.removed: list[str] = []
        self.batches: list[list[ObjectRef]] = []
        self.running = self.most = 0

    async def delete_many(self, refs: list[ObjectRef]) -> list[tuple[ObjectRef, CallFSError]]:
        self.batches.append(list(refs))
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0)
        self.running -= 1
        if self.broken:
            raise BackendUnavailable("every node gone")
        failed: list[tuple[ObjectRef, CallFSError]] = []
        for ref in refs:
            if ref.key in self.failing:
                failed.append((ref, BackendUnavailable("node gone")))
            else:
                self.removed.append(ref.key)
        return failed


def refs(count: int, backend: BackendName = "localfs") -> list[ObjectRef]:
    return [ObjectRef(backend, f"k{number:03}", ("node-0",)) for number in range(count)]


def reclaimer(
    backend: Recorder, *, concurrency: int, batch: int = 1, seen: list[int] | None = None
) -> Reclaimer:
    def backend_of(name: str) -> Backend:
        assert name in ("localfs", "s3")
        return backend  # type: ignore[return-value]

    return Reclaimer(
        backend_of,
        concurrency=concurrency,
        batch=batch,
        on_change=None if seen is None else seen.append,
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


async def test_objects_go_in_batches_of_one_backend_in_the_order_given() -> None:
    backend = Recorder()
    queue = reclaimer(backend, concurrency=1, batch=4)
    queue.reclaim([*refs(6), *refs(3, "s3"), *refs(2)])
    await queue.idle()
    assert [[(ref.backend, ref.key) for ref in batch] for batch in backend.batches] == [
        [("localfs", "k000"), ("localfs", "k001"), ("localfs", "k002"), ("localfs", "k003")],
        [("localfs", "k004"), ("localfs", "k005")],
        [("s3", "k000"), ("s3", "k001"), ("s3", "k002")],
        [("localfs", "k000"), ("localfs", "k001")],
    ]


async def test_no_more_workers_than_batches() -> None:
    backend = Recorder()
    queue = reclaimer(backend, concurrency=8, batch=10)
    queue.reclaim(refs(20))
    await queue.idle()
    assert backend.most == 2 and len(backend.batches) == 2


async def test_a_batch_that_fails_whole_is_logged_object_by_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = Recorder(broken=True)
    queue = reclaimer(backend, concurrency=1, batch=5)
    queue.reclaim(refs(2))
    await queue.idle()
    assert "could not remove object k000 on node-0: every node gone" in caplog.text
    assert "could not remove object k001 on node-0" in caplog.text
    assert queue.pending == 0


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
