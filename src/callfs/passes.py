"""Background passes that one gateway replica at a time runs, every interval.

The reconciler, the repairer and the scrubber each walk the whole store and the
nodes; every gateway tries a pass every interval, a coordination lock lets one at a
time run it, and the others skip theirs. This module is that shape, once, and the
walk over the stored files the repairer and the scrubber share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Literal, Protocol

from callfs import background
from callfs.coordination.base import Locks
from callfs.entry import Entry
from callfs.errors import LockTimeout
from callfs.metadata.base import MetadataStore
from callfs.paths import ROOT

logger = logging.getLogger(__name__)

Result = Literal["ok", "partial", "failed", "skipped"]
MIN_INTERVAL = 0.1
PAGE = 500
# ctime has whole seconds: a file changed in the second a pass began waits a pass.
RECENT = timedelta(seconds=2)


class Report(Protocol):
    """What a pass returns: at least whether it did all it set out to."""

    @property
    def result(self) -> Result: ...


class RunCounter(Protocol):
    """A counter of passes by result (a labelled Prometheus counter)."""

    def labels(self, result: str) -> _Incrementable: ...


class _Incrementable(Protocol):
    def inc(self) -> None: ...


async def exclusive(
    locks: Locks,
    key: str,
    name: str,
    run_pass: Callable[[], Awaitable[Report]],
    runs: RunCounter | None = None,
) -> Result:
    """Run ``run_pass`` unless another replica holds ``key``; count the result in ``runs``.

    Never raises: a failure is logged (``name`` says whose) and reported as ``failed``.
    """
    result: Result
    try:
        async with locks.hold([key], timeout=0):
            result = (await run_pass()).result
    except LockTimeout:
        logger.debug("%s: another replica is running a pass; skipping", name)
        result = "skipped"
    except Exception:
        logger.warning("%s pass failed", name, exc_info=True)
        result = "failed"
    if runs is not None:
        runs.labels(result).inc()
    return result


async def every(interval: float, attempt: Callable[[], Awaitable[object]]) -> None:
    """Await ``attempt()`` every ``interval`` seconds (the first one interval after
    start) until cancelled."""
    while True:
        await asyncio.sleep(max(interval, MIN_INTERVAL))
        await attempt()


@contextlib.asynccontextmanager
async def running(
    name: str, interval: float, attempt: Callable[[], Awaitable[object]]
) -> AsyncIterator[None]:
    """Run ``attempt`` every ``interval`` seconds in the background for the duration of
    the block (not at all when ``interval`` is 0)."""
    if interval <= 0:
        yield
        return
    async with background.running(every(interval, attempt), name):
        yield


async def stored_files(store: MetadataStore, backend: str) -> AsyncIterator[Entry]:
    """Every file of ``store`` whose bytes are an object on ``backend``, in path order,
    read a page at a time.

    Raises:
        BackendUnavailable: the metadata store does not answer.
    """
    after: str | None = None
    while True:
        page = await store.list_tree(ROOT, limit=PAGE, after=after)
        for entry in page:
            # An entry naming no node keeps its bytes in the metadata store.
            if not entry.is_dir and entry.backend == backend and entry.object_key and entry.holders:
                yield entry
        if len(page) < PAGE:
            return
        after = page[-1].path
