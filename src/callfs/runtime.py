"""The adapters one process runs on, chosen once from settings and opened together.

Nothing below this line asks which adapter it has: the metadata store, the
coordination trio (locks, rate limits, cache bus), node discovery and the byte
backends all sit behind their interfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from callfs.auth import Authenticator
from callfs.backends.base import Backend
from callfs.backends.storage_node import StorageNodeBackend
from callfs.coordination import build_coordination
from callfs.coordination.base import CacheBus, Locks, RateLimiter
from callfs.discovery import build_discovery
from callfs.discovery.base import Discovery
from callfs.errors import BackendUnavailable, BadRequest
from callfs.metadata import open_store
from callfs.metadata.base import MetadataStore
from callfs.metadata.cache import CachedMetadataStore
from callfs.metadata.instrumented import InstrumentedMetadataStore
from callfs.metrics import Metrics
from callfs.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

NODE_STATUS_INTERVAL = 5.0


@dataclass
class Runtime:
    """Everything a gateway or link-service request needs, opened once per process."""

    settings: Settings
    store: MetadataStore
    """The namespace behind its read cache: lookups for reads and every mutation."""
    truth: MetadataStore
    """The same store without the cache: what every mutation decides from."""
    locks: Locks
    limiter: RateLimiter
    bus: CacheBus
    discovery: Discovery
    backends: dict[str, Backend]
    nodes: StorageNodeBackend
    """The storage-node backend (also ``backends["localfs"]``), for what only storage
    nodes do: repair, scrubbing, rebalancing, the cluster report."""
    auth: Authenticator
    metrics: Metrics
    self_counted: frozenset[str] = frozenset()
    """Backends that count and time their own operations (see :meth:`record_backend_op`)."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def backend(self, name: str | None = None) -> Backend:
        """The backend called ``name`` (default: the configured default).

        Raises:
            BadRequest: that backend is not configured here.
        """
        wanted = name or self.settings.backend.default_backend
        try:
            return self.backends[wanted]
        except KeyError:
            raise BadRequest(f"backend {wanted!r} is not configured") from None

    def record_backend_op(self, backend: str, operation: str, seconds: float) -> None:
        """Count and time a backend call a caller made, unless the backend counts its own."""
        if backend in self.self_counted:
            return
        self.metrics.backend_ops.labels(backend, operation).inc()
        self.metrics.backend_duration.labels(backend, operation).observe(seconds)

    async def timed(self, backend: Backend, operation: str, awaitable: Awaitable[T]) -> T:
        """Await one call of ``backend``, counting and timing it: the one place the
        gateway and the link-service count backend operations (S3 counts its own
        requests, so it is counted only there)."""
        started = time.perf_counter()
        result = "error"
        try:
            value = await awaitable
            result = "ok"
            return value
        finally:
            self.record_backend_op(backend.name, operation, time.perf_counter() - started)
            if backend.proxied:
                self.metrics.proxy_operations.labels(operation, result).inc()

    async def ready(self) -> None:
        """Raise BackendUnavailable unless reads can be served: the metadata store answers.

        The coordination service is not asked: without it reads go on and only
        mutations are refused, so its loss must not take every replica out.
        """
        await self.store.ping()

    async def close(self) -> None:
        """Close every adapter, newest first."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for backend in self.backends.values():
            await backend.close()
        await self.discovery.stop()
        await self.store.close()
        await self.bus.close()
        await self.limiter.close()
        await self.locks.close()


async def open_runtime(
    settings: Settings,
    *,
    discovery: Discovery | None = None,
    metrics: Metrics | None = None,
) -> Runtime:
    """Build and open every adapter the settings ask for.

    Raises:
        BackendUnavailable: the metadata store cannot be reached at start-up.
    """
    metrics = metrics or Metrics()
    locks, limiter, bus = build_coordination(settings.dlm)
    discovery = discovery or build_discovery(settings.instance_discovery)
    inner = InstrumentedMetadataStore(open_store(settings.metadata_store), metrics)
    store = CachedMetadataStore(
        inner,
        bus,
        ttl=settings.metadata_store.cache_ttl,
        size=settings.metadata_store.cache_size,
        on_hit=metrics.cache_hits.inc,
        on_miss=metrics.cache_misses.inc,
    )
    nodes = StorageNodeBackend(
        discovery,
        settings.auth.internal_proxy_secret.get_secret_value(),
        chunk_size=settings.server.chunk_size,
        timeout=settings.server.file_op_timeout,
        max_message_bytes=settings.storage_node.max_message_bytes,
        replication=settings.replication.factor,
        write_quorum=settings.replication.quorum,
        draining=settings.replication.draining,
        metrics=metrics,
    )
    backends: dict[str, Backend] = {"localfs": nodes}
    self_counted: set[str] = set()
    if settings.backend.s3_configured:
        from callfs.backends.s3 import S3Backend

        # S3 reports every request it makes (deletes and copies too), so it is the one
        # place its operations are counted.
        backends["s3"] = S3Backend(
            settings.backend,
            chunk_size=settings.server.chunk_size,
            observe=backend_observer(metrics, "s3"),
        )
        self_counted.add("s3")
    elif settings.backend.default_backend == "s3":
        raise BackendUnavailable("default backend is s3 but backend.s3_bucket_name is not set")
    runtime = Runtime(
        settings=settings,
        store=store,
        truth=inner,
        locks=locks,
        limiter=limiter,
        bus=bus,
        discovery=discovery,
        backends=backends,
        nodes=nodes,
        auth=Authenticator(settings.auth),
        metrics=metrics,
        self_counted=frozenset(self_counted),
    )
    try:
        await discovery.start()
        await store.open()
        for backend in backends.values():
            await backend.start()
    except BaseException:
        await runtime.close()
        raise
    runtime._tasks.append(asyncio.create_task(_report_nodes(runtime)))
    return runtime


def backend_observer(metrics: Metrics, backend_type: str) -> Callable[[str, float, bool], None]:
    """An ``observe(operation, seconds, ok)`` hook feeding the backend operation metrics."""

    def observe(operation: str, seconds: float, ok: bool) -> None:
        metrics.backend_ops.labels(backend_type, operation).inc()
        metrics.backend_duration.labels(backend_type, operation).observe(seconds)

    return observe


async def _report_nodes(runtime: Runtime) -> None:
    """Keep ``callfs_storage_node_up`` current."""
    while True:
        gauge = runtime.metrics.storage_node_up
        for instance, up in runtime.nodes.node_status().items():
            gauge.labels(instance).set(1 if up else 0)
        await asyncio.sleep(NODE_STATUS_INTERVAL)
