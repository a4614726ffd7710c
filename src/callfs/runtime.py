"""The adapters one process runs on, chosen once from settings and opened together.

Nothing below this line asks which adapter it has: the metadata store, the
coordination trio (locks, rate limits, cache bus), node discovery and the byte
backends all sit behind their interfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from callfs.auth import Authenticator
from callfs.backends.base import Backend
from callfs.backends.inline import InlineContents
from callfs.backends.instrumented import InstrumentedBackend
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
from callfs.objectcache import ObjectCache
from callfs.reclaimer import Reclaimer
from callfs.settings import Settings
from callfs.storage.inprocess import InProcessServer

if TYPE_CHECKING:
    from callfs.tracing.otel import Tracing

logger = logging.getLogger(__name__)

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
    """Every configured backend by name, each wrapped in an :class:`InstrumentedBackend`
    that counts and times its operations."""
    nodes: StorageNodeBackend
    """The storage-node backend itself (``backends["localfs"]`` unwrapped), for what
    only storage nodes do: repair, scrubbing, rebalancing, the cluster report."""
    auth: Authenticator
    metrics: Metrics
    reclaimer: Reclaimer = field(init=False)
    """Removes objects nothing points to any more (those of deleted subtrees in the
    background), through :meth:`backend`."""
    objects: ObjectCache | None = None
    """Small objects' bytes (None: the cache is off)."""
    tracing: Tracing | None = None
    """Where the spans of requests, queries and node calls go (None: tracing is off)."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reclaimer = Reclaimer(self.backend, on_change=self.metrics.reclaim_pending.set)

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
        await self.reclaimer.close()
        for backend in self.backends.values():
            await backend.close()
        await self.discovery.stop()
        await self.store.close()
        await self.bus.close()
        await self.limiter.close()
        await self.locks.close()
        if self.tracing is not None:
            await self.tracing.close()


async def open_runtime(
    settings: Settings,
    *,
    discovery: Discovery | None = None,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    in_process: Mapping[str, InProcessServer] | None = None,
) -> Runtime:
    """Build and open every adapter the settings ask for; with ``tracing``, the metadata
    store and the storage-node channels are traced, and the runtime closes it last;
    the storage nodes of ``in_process`` (address -> node) are called without gRPC.

    Raises:
        BackendUnavailable: the metadata store cannot be reached at start-up.
    """
    metrics = metrics or Metrics()
    locks, limiter, bus = build_coordination(settings.dlm)
    discovery = discovery or build_discovery(settings.instance_discovery)
    database = open_store(settings.metadata_store)
    inner = (
        InstrumentedMetadataStore(database, metrics)
        if tracing is None
        else tracing.metadata_store(database, metrics, settings.metadata_store.type)
    )
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
        interceptors=None if tracing is None else tracing.channel_interceptors,
        in_process=in_process,
    )
    # Small files' bytes may be kept in the metadata store: read from there (with or
    # without backend.inline_max_bytes now; files written with it stay where they are).
    backends: dict[str, Backend] = {"localfs": InlineContents(nodes, inner)}
    if settings.backend.s3_configured:
        from callfs.backends.s3 import S3Backend

        backends["s3"] = S3Backend(settings.backend, chunk_size=settings.server.chunk_size)
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
        backends={
            name: InstrumentedBackend(backend, metrics) for name, backend in backends.items()
        },
        nodes=nodes,
        auth=Authenticator(settings.auth),
        metrics=metrics,
        objects=_object_cache(settings, metrics),
        tracing=tracing,
    )
    try:
        await discovery.start()
        await store.open()
        for backend in runtime.backends.values():
            await backend.start()
    except BaseException:
        await runtime.close()
        raise
    runtime._tasks.append(asyncio.create_task(_report_nodes(runtime)))
    return runtime


async def _report_nodes(runtime: Runtime) -> None:
    """Keep ``callfs_storage_node_up`` current."""
    reported: set[str] = set()
    while True:
        reported = report_nodes(
            runtime.metrics.storage_node_up, runtime.nodes.node_status(), reported
        )
        await asyncio.sleep(NODE_STATUS_INTERVAL)


def report_nodes(gauge: Gauge, status: Mapping[str, bool], reported: set[str]) -> set[str]:
    """Set ``gauge`` to ``status`` (instance id -> up) and drop the series of the nodes
    ``reported`` last time that discovery no longer names; returns the nodes reported.

    A node scaled away was down when it left: its series would otherwise stay at 0
    for the life of the gateway, and the node-down alert would fire on for a node
    that is gone on purpose.
    """
    for instance in reported - status.keys():
        gauge.remove(instance)
    for instance, up in status.items():
        gauge.labels(instance).set(1 if up else 0)
    return set(status)


def _object_cache(settings: Settings, metrics: Metrics) -> ObjectCache | None:
    capacity = settings.server.object_cache_bytes
    if capacity == 0:
        return None
    return ObjectCache(capacity, settings.server.object_cache_max_object, metrics)
