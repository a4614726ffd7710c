"""Reclaiming the bytes of deleted entries in the background.

A recursive delete removes the subtree's rows in one transaction and answers at
once; the objects those rows pointed to are handed to the :class:`Reclaimer`, which
removes them a few at a time while the gateway goes on serving. Nothing points to
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

CONCURRENCY = 16
"""Objects removed at once: enough to keep every node busy, few enough not to crowd
out the requests the gateway serves meanwhile."""


class Reclaimer:
    """Removes objects nothing points to any more, in the background, in order given.

    A removal that fails is logged and left to the reconciler, like any cleanup.
    """

    def __init__(
        self,
        backend: Callable[[str], Backend],
        *,
        concurrency: int = CONCURRENCY,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self._backend = backend
        self._concurrency = concurrency
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
        for _ in range(min(self._concurrency, len(self._queue)) - running):
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
            ref = self._queue.popleft()
            self._in_flight += 1
            try:
                await self.remove(ref)
            finally:
                self._in_flight -= 1
                self._changed()
        if not self._in_flight and not self._queue:
            self._idle.set()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.pending)


def given_up(ref: ObjectRef, reason: BaseException) -> None:
    """Log an object that could not be removed (the reconciler will)."""
    where = ", ".join(ref.replicas) or ref.backend
    logger.warning("could not remove object %s on %s: %s", ref.key, where, reason)
