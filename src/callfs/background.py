"""Background tasks that live as long as a block: workers, renewals, listeners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``work`` as a task for the duration of the block, then stop it."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        await stop(task)
