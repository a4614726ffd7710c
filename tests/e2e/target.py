"""The system the end-to-end suite talks to, and the small HTTP vocabulary of its tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.cluster import Cluster, load

WAIT_TIMEOUT = 60.0


@dataclass
class Target:
    """Two front doors, a metrics listener, API keys, and the local cluster when there is one."""

    url: str
    url2: str
    metrics: str | None
    api_keys: list[str]
    cluster: Cluster | None = None
    _clients: dict[tuple[int, int], httpx.Client] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Target:
        """Read ``CALLFS_URL`` (required), ``CALLFS_URL2``, ``CALLFS_METRICS``,
        ``CALLFS_API_KEYS`` and ``CALLFS_CLUSTER_DIR`` (a local cluster's handle).

        Raises:
            ValueError: ``CALLFS_URL`` or ``CALLFS_API_KEYS`` is missing.
        """
        url = environ.get("CALLFS_URL", "").rstrip("/")
        keys = [k.strip() for k in environ.get("CALLFS_API_KEYS", "").split(",") if k.strip()]
        if not url or not keys:
            raise ValueError("tests/e2e needs CALLFS_URL and CALLFS_API_KEYS (comma-separated)")
        cluster_dir = environ.get("CALLFS_CLUSTER_DIR")
        return cls(
            url=url,
            url2=(environ.get("CALLFS_URL2") or url).rstrip("/"),
            metrics=(environ.get("CALLFS_METRICS") or "").rstrip("/") or None,
            api_keys=keys,
            cluster=load(Path(cluster_dir)) if cluster_dir else None,
        )

    @classmethod
    def of_cluster(cls, cluster: Cluster) -> Target:
        """The target a local cluster offers."""
        return cls(cluster.url, cluster.url2, cluster.metrics, cluster.api_keys, cluster)

    def client(self, user: int = 1, door: int = 1) -> httpx.Client:
        """A client of ``api-user-<user>`` through front door 1 or 2 (user 0: no key)."""
        with self._lock:
            return self._client(user, door)

    def _client(self, user: int, door: int) -> httpx.Client:
        if (user, door) not in self._clients:
            if user > len(self.api_keys):
                raise AssertionError(
                    f"the test needs api-user-{user}, but CALLFS_API_KEYS holds "
                    f"{len(self.api_keys)} key(s)"
                )
            headers = {"Authorization": f"Bearer {self.api_keys[user - 1]}"} if user else {}
            self._clients[(user, door)] = httpx.Client(
                base_url=self.url if door == 1 else self.url2,
                headers=headers,
                timeout=60,
                trust_env=False,
            )
        return self._clients[(user, door)]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def code(response: httpx.Response) -> str:
    """The ``code`` of an API error body."""
    body = response.json()
    assert isinstance(body, dict), body
    return str(body["code"])


def chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    """``total`` bytes of a repeating, position-dependent pattern, ``size`` at a time."""
    block = bytes(range(256)) * (size // 256)
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        yield piece
        sent += len(piece)


def eventually(
    attempt: Callable[[], httpx.Response],
    accept: Callable[[httpx.Response], bool],
    *,
    what: str,
    timeout: float = WAIT_TIMEOUT,
) -> httpx.Response:
    """Repeat ``attempt`` until ``accept`` takes its response; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        response = attempt()
        if accept(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {response.status_code} {response.text[:200]}")
        # Polling another process's state (a reconnecting channel, a refilling bucket).
        time.sleep(0.2)


def download(client: httpx.Client, url: str) -> httpx.Response:
    """GET a link, waiting out the per-address download rate limit (429) if it bites."""
    return eventually(
        lambda: client.get(url),
        lambda response: response.status_code != 429,
        what=f"download of {url} rate-limited",
    )
