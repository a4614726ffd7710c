"""The link-service's rate limits: generations per API key, downloads per client address.

Both go through the runtime's limiter (Redis in production, so a limit holds
across every replica; in-process embedded).
"""

from __future__ import annotations

from collections.abc import Iterable

from callfs.addresses import TrustedProxies
from callfs.errors import RateLimitExceeded
from callfs.permissions import User
from callfs.runtime import Runtime

GENERATE_ENDPOINT = "/v1/links/generate"
DOWNLOAD_ENDPOINT = "/download/{token}"


class LinkLimits:
    """Takes one token from the caller's bucket, or refuses with the wait."""

    def __init__(self, runtime: Runtime) -> None:
        self.limiter = runtime.limiter
        self.settings = runtime.settings.links
        self.metrics = runtime.metrics
        self.proxies = TrustedProxies(runtime.settings.server.trusted_proxies)

    async def generate(self, user: User) -> None:
        """Count one link generation against ``user``'s API key.

        Raises:
            RateLimitExceeded: the key's bucket is empty.
        """
        await self._hit(
            GENERATE_ENDPOINT,
            f"links:generate:{user.name}",
            self.settings.generate_rate,
            self.settings.generate_burst,
        )

    async def download(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """Count one download against the client's address; return that address.

        Raises:
            RateLimitExceeded: the address's bucket is empty.
        """
        address = self.proxies.client(peer, forwarded_for)
        await self._hit(
            DOWNLOAD_ENDPOINT,
            f"links:download:{address}",
            self.settings.download_rate,
            self.settings.download_burst,
        )
        return address

    async def _hit(self, endpoint: str, key: str, rate: float, burst: int) -> None:
        wait = await self.limiter.hit(key, rate=rate, burst=burst)
        if wait > 0:
            self.metrics.rate_limited.labels(endpoint).inc()
            raise RateLimitExceeded(f"too many requests; retry in {wait:.1f}s", retry_after=wait)
