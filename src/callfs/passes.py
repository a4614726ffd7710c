"""Background passes that one gateway replica at a time runs, every interval.

The reconciler, the repairer and the scrubber each walk the whole store and the
nodes; every gateway tries a pass every interval, a coordination lock lets one at a
time run it, and the others skip theirs. This module is that shape, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, Protocol

from callfs import background
from callfs.coordination.base import Locks
from callfs.errors import LockTimeout

logger = logging.getLogger(__name__)

Result = Literal["ok", "partial", "failed", "skipped"]
MIN_INTERVAL = 0.1


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
