"""A rolling restart of every storage node, one after another, under mixed read and
write load through both front doors: not one request fails, and every byte read is
the byte written. Needs the local cluster (it kills and restarts processes).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.target import Target
from tools.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster]

WORKERS = 4


def body(name: str, version: int) -> bytes:
    """Up to ~600 KiB, different for every file and version."""
    seed = hashlib.sha256(f"{name}:{version}".encode()).digest()
    return seed * (1 + (seed[0] * 97) % 19_000)


class Load:
    """Workers that create, replace and read their own files until told to stop."""

    def __init__(self, target: Target, home: str) -> None:
        self.target = target
        self.home = home
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(n,), daemon=True) for n in range(WORKERS)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def _work(self, worker: int) -> None:
        client = self.target.client(1, door=1 + worker % 2)
        versions: dict[str, int] = {}
        step = 0
        while not self.stop.is_set():
            name = f"{self.home}/w{worker}-{step % 6}"
            url = f"/v1/files{name}"
            try:
                if name not in versions:
                    response = client.post(url, content=body(name, 0))
                    if self._check(response, 201, f"create {name}"):
                        versions[name] = 0
                elif step % 3 == 0:
                    version = versions[name] + 1
                    response = client.put(url, content=body(name, version))
                    if self._check(response, 200, f"replace {name}"):
                        versions[name] = version
                else:
                    response = client.get(url)
                    ok = self._check(response, 200, f"read {name}")
                    if ok and response.content != body(name, versions[name]):
                        self._fail(f"read {name}: wrong bytes")
            except httpx.HTTPError as exc:
                self._fail(f"{name}: {exc!r}")
            step += 1

    def _check(self, response: httpx.Response, status: int, what: str) -> bool:
        with self._lock:
            self.requests += 1
        if response.status_code != status:
            self._fail(f"{what}: {response.status_code} {response.text[:200]}")
            return False
        return True

    def _fail(self, problem: str) -> None:
        with self._lock:
            self.failures.append(problem)


@pytest.fixture
def all_nodes_back(cluster: Cluster) -> Iterator[None]:
    yield
    for node in cluster.nodes:
        if not cluster.running(node):
            cluster.restart_node(node)


def test_a_rolling_restart_under_load_fails_no_request(
    cluster: Cluster, target: Target, home: str, all_nodes_back: None
) -> None:
    with Load(target, home) as load:
        for node in cluster.nodes:
            cluster.kill_node(node)
            cluster.restart_node(node)
        during = load.requests
    assert load.failures == [], "\n".join(load.failures)
    assert during > 50
