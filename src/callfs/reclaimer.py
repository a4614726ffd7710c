"""Reclaiming the bytes of deleted entries in the background.

A recursive delete removes the subtree's rows in one transaction and answers at
once; the objects those rows pointed to are handed to the :class:`Reclaimer`, which
removes them in batches (one call per storage node for each, see
:meth:`~callfs.backends.base.Backend.delete_many`), a few batches at a time, while the
gateway goes on serving. Nothing points to
them any more, so nothing can see them in between. A gateway that stops or crashes
first leaves the rest as orphans, which the reconciler removes on its next pass:
a crash only delays reclamation.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterable

from callfs.backends.base import Backend, ObjectRef
from callfs.errors import CallFSError

logger = logging.getLogger(__name__)

CONCURRENCY = 4
"""Batches removed at once: enough to keep every node busy, few enough not to crowd
out the requests the gateway serves meanwhile."""
BATCH = 250
"""Objects per batch: one call per node removes them all."""


class Reclaimer:
    """Removes objects nothing points to any more, in the background, in the order
    given, ``batch`` objects of one backend per call and ``concurrency`` calls at once.

    A removal that fails is logged and left to the reconciler, like any cleanup.
    """

    def __init__(
        self,
        backend: Callable[[str], Backend],
        *,
        concurrency: int = CONCURRENCY,
        batch: int = BATCH,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self._backend = backend
        self._concurrency = concurrency
        self._batch = batch
        self._on_change = on_change
        self._queue: collections.deque[ObjectRef] = collections.deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Objects waiting or being removed."""
        return len(self._queue) + self._in_flight

    def reclaim(self, refs: Iterable[ObjectRef]) -> None:
        """Queue ``refs`` for removal and return at once."""
        if self._closed:
            return
        self._queue.extend(refs)
        if not self._queue:
            return
        self._idle.clear()
        self._changed()
        running = sum(not worker.done() for worker in self._workers)
        batches = -(-len(self._queue) // self._batch)
        for _ in range(min(self._concurrency, batches) - running):
            worker = asyncio.create_task(self._work(), name="callfs-reclaimer")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    async def idle(self) -> None:
        """Wait until every object queued so far has been removed (or given up on)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop removing; what is still queued is left to the reconciler."""
        self._closed = True
        left = len(self._queue)
        self._queue.clear()
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if left:
            logger.info("%d deleted objects left to the reconciler", left)
        self._idle.set()

    async def remove(self, ref: ObjectRef) -> None:
        """Remove one object now; a failure is logged and left to the reconciler."""
        try:
            await self._backend(ref.backend).delete(ref)
        except CallFSError as exc:
            given_up(ref, exc)

    async def _work(self) -> None:
        while self._queue:
            batch = self._next_batch()
            self._in_flight += len(batch)
            try:
                failed = await self._backend(batch[0].backend).delete_many(batch)
            except CallFSError as exc:
                failed = [(ref, exc) for ref in batch]
            finally:
                self._in_flight -= len(batch)
                self._changed()
            for ref, reason in failed:
                given_up(ref, reason)
        if not self._in_flight and not self._queue:
            self._idle.set()

    def _next_batch(self) -> list[ObjectRef]:
        """The next objects queued, up to ``batch`` of them, all of the first's backend."""
        batch = [self._queue.popleft()]
        while self._queue and len(batch) < self._batch:
            if self._queue[0].backend != batch[0].backend:
                break
            batch.append(self._queue.popleft())
        return batch

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.pending)


def given_up(ref: ObjectRef, reason: BaseException) -> None:
    """Log an object that could not be removed (the reconciler will)."""
    where = ", ".join(ref.replicas) or ref.backend
    logger.warning("could not remove object %s on %s: %s", ref.key, where, reason)
