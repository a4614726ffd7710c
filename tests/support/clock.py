"""A clock the test moves: code that asks what time it is gets the test's answer, so a
test of expiry advances time instead of sleeping through it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class ManualClock:
    """Seconds since the epoch, standing still until :meth:`advance` moves them."""

    def __init__(self, start: float | None = None) -> None:
        self.seconds = time.time() if start is None else start

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def now(self) -> datetime:
        """The moment the clock shows."""
        return datetime.fromtimestamp(self.seconds, UTC)
