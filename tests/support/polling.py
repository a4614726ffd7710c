"""Waiting for something another thread or process makes true, without asserting on time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

WAIT_TIMEOUT = 10.0
POLL_INTERVAL = 0.02


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = WAIT_TIMEOUT, what: str = "condition"
) -> None:
    """Return once ``condition()`` is true; fail the test if it stays false for ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            # Polling: the condition is often another thread's or process's state.
            while True:
                if condition():
                    return
                await asyncio.sleep(POLL_INTERVAL)
    except TimeoutError:
        raise AssertionError(f"{what} did not hold within {timeout}s") from None


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float = WAIT_TIMEOUT,
    what: str = "condition",
) -> None:
    """Return once ``await check()`` is true; fail the test if it stays false for ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                if await check():
                    return
                await asyncio.sleep(POLL_INTERVAL)
    except TimeoutError:
        raise AssertionError(f"{what} did not hold within {timeout}s") from None
