"""The temp-file sweeper: removes what interrupted uploads left in the volume.

A write streams into a temp file (``.callfs-tmp-*``) and renames it when done; a
node killed meanwhile leaves the temp file behind. Only this node writes its
volume, so when it starts every temp file there is such a leftover and goes at
once, before the node serves. While it runs, a temp file goes once untouched for
``storage_node.temp_grace``: the grace spares the writes of another process on the
volume (a node still stopping while its successor starts). The temp files of this
node's own writes in progress are never swept, however long their clients pause.
A failure is logged and retried at the next interval; it never stops the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from callfs import background
from callfs_storage_node.volume import Volume

logger = logging.getLogger(__name__)

# Sweeps per grace: a leftover goes at most grace * (1 + 1/SWEEPS_PER_GRACE) after
# its last write, while a large volume is walked only a few times per grace.
SWEEPS_PER_GRACE = 2
MIN_INTERVAL = 0.01


async def sweep_all(volume: Volume) -> None:
    """Remove every temp file but those of writes in progress here (at start-up)."""
    try:
        await volume.sweep_temp_files()
    except OSError as exc:
        logger.warning("could not sweep temp files under %s: %s", volume.root, exc)


async def run(volume: Volume, *, grace: float, interval: float) -> None:
    """Every ``interval`` seconds, remove temp files untouched for ``grace``; until cancelled."""
    while True:
        await asyncio.sleep(max(interval, MIN_INTERVAL))
        try:
            await volume.sweep_temp_files(grace)
        except OSError as exc:
            logger.warning("could not sweep temp files under %s: %s", volume.root, exc)


@contextlib.asynccontextmanager
async def running(
    volume: Volume, *, grace: float, interval: float | None = None
) -> AsyncIterator[None]:
    """Sweep in the background for the duration of the block (by default
    ``SWEEPS_PER_GRACE`` times per ``grace``).
    """
    every = grace / SWEEPS_PER_GRACE if interval is None else interval
    async with background.running(run(volume, grace=grace, interval=every), "temp-sweeper"):
        yield
