"""Keeping held locks alive in the background while a body runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from callfs import background
from callfs.coordination.base import Locks
from callfs.errors import CallFSError

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def renewing(
    locks: Locks, held: list[tuple[str, str]], *, every: float
) -> AsyncIterator[None]:
    """Renew every ``(key, token)`` in ``held`` each ``every`` seconds until the block ends.

    A lock found lost is logged and no longer renewed; the body is not interrupted.
    """
    if not held:
        yield
        return
    async with background.running(_renew_forever(locks, list(held), every), "lock-renewal"):
        yield


async def _renew_forever(locks: Locks, held: list[tuple[str, str]], every: float) -> None:
    while held:
        await asyncio.sleep(every)
        for key, token in list(held):
            try:
                kept = await locks.renew(key, token)
            except CallFSError as exc:
                logger.warning("could not renew the lock on %s: %s", key, exc)
                continue
            if not kept:
                logger.warning("lost the lock on %s before the operation finished", key)
                held.remove((key, token))
