"""Fixtures for the discovery suite: a real Kubernetes API server and the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import kubernetes.client
import pytest

from callfs.discovery.kubernetes import KubernetesDiscovery
from tests.support.k8s_api import KubernetesAPIServer
from tests.support.polling import wait_until

SERVICE = "callfs-storage-node"

Discover = Callable[..., Awaitable[KubernetesDiscovery]]


@pytest.fixture
async def k8s_api() -> AsyncIterator[KubernetesAPIServer]:
    """An EndpointSlice list/watch API server on a loopback port."""
    server = KubernetesAPIServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def api_client(k8s_api: KubernetesAPIServer) -> Iterator[kubernetes.client.ApiClient]:
    """The real ``kubernetes`` client, pointed at ``k8s_api``."""
    client = k8s_api.api_client()
    yield client
    client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
async def discover(
    k8s_api: KubernetesAPIServer, api_client: kubernetes.client.ApiClient
) -> AsyncIterator[Discover]:
    """Start a KubernetesDiscovery for ``SERVICE`` in ``default``; stopped after the test.

    Unless told ``watching=False``, returns once its watch is open on the server,
    so a test's next change or fault reaches a watching client.
    """
    started: list[KubernetesDiscovery] = []

    async def start(
        service: str = SERVICE, *, watching: bool = True, **options: Any
    ) -> KubernetesDiscovery:
        discovery = KubernetesDiscovery("default", service, api_client=api_client, **options)
        started.append(discovery)
        await discovery.start()
        if watching:
            await wait_until(lambda: k8s_api.open_watches == 1, what="an open watch")
        return discovery

    yield start
    for discovery in started:
        await discovery.stop()
