"""The cleanup worker: purges expired link records in batches, on an interval.

Only expiry makes a record dead: a used link's record stays until the link expires,
so the link keeps answering 410 LINK_USED until then (afterwards the token's own
expiry answers 410 LINK_EXPIRED, before any lookup). Every replica may run it: a
purge deletes only rows that are already dead, so two replicas purging at once at
worst find less to delete. A failure is logged and retried at the next interval; it
never stops the worker or touches a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from callfs import background
from callfs.metadata.base import MetadataStore

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""What time it is, for deciding which links have expired."""

# Full batches in a row before yielding to the next interval, so a huge backlog
# cannot keep one replica's store connection busy without pause.
MAX_BATCHES_PER_ROUND = 100
MIN_INTERVAL = 0.1


def _wall_clock() -> datetime:
    return datetime.now(UTC)


async def purge(store: MetadataStore, batch: int, now: Clock = _wall_clock) -> int:
    """Delete the links expired by ``now()``, batch after batch while batches come back
    full; return how many."""
    total = 0
    for _ in range(MAX_BATCHES_PER_ROUND):
        removed = await store.purge_links(now(), batch)
        total += removed
        if removed < batch:
            break
        # Let requests on this event loop run between batches.
        await asyncio.sleep(0)
    return total


async def run(
    store: MetadataStore, *, interval: float, batch: int, now: Clock = _wall_clock
) -> None:
    """Purge every ``interval`` seconds until cancelled."""
    while True:
        try:
            removed = await purge(store, batch, now)
        except Exception:
            logger.warning("link cleanup failed; retrying in %.0fs", interval, exc_info=True)
        else:
            if removed:
                logger.info("link cleanup purged %d expired links", removed)
        await asyncio.sleep(max(interval, MIN_INTERVAL))


@contextlib.asynccontextmanager
async def running(
    store: MetadataStore, *, interval: float, batch: int, now: Clock = _wall_clock
) -> AsyncIterator[None]:
    """Run the worker in the background for the duration of the block."""
    worker = run(store, interval=interval, batch=batch, now=now)
    async with background.running(worker, "link-cleanup"):
        yield
