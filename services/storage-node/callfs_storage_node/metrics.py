"""The storage node's Prometheus metrics, served on its metrics listener.

Families (besides the standard ``process_*`` and ``python_*``):

``callfs_storage_node_rpcs_total{service,method,code}``
    RPCs finished, by gRPC service, method and status code (``OK``, ``NOT_FOUND``...).
``callfs_storage_node_rpc_duration_seconds{service,method}``
    How long RPCs took, streams included.
``callfs_storage_node_read_bytes_total`` / ``callfs_storage_node_written_bytes_total``
    Bytes sent by ``Read`` / stored by successful ``Write`` calls.
``callfs_storage_node_fsync_duration_seconds{kind}``
    How long each fsync took (``kind``: ``file``, ``directory``).
``callfs_storage_node_volume_capacity_bytes``, ``..._volume_used_bytes``,
``..._volume_free_bytes``, ``..._volume_objects``, ``callfs_storage_node_temp_files``
    The volume as its last usage walk measured it (see :meth:`NodeMetrics.refresh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callfs.metrics import process_registry
from callfs_storage_node.volume import Volume

# A scrape reuses a usage walk this recent (a gateway's Usage calls share the walks).
SCRAPE_USAGE_MAX_AGE = 15.0
# How long a scrape waits for a usage walk; a longer one goes on in the background
# and the scrape reports the previous walk's answer.
SCRAPE_USAGE_WAIT = 1.0

RPC_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
FSYNC_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip


class NodeMetrics:
    """Every metric family of one storage node, in its own registry."""

    def __init__(self) -> None:
        self.registry = process_registry()
        r = self.registry
        self.rpcs = Counter(
            "callfs_storage_node_rpcs_total",
            "RPCs finished, by gRPC service, method and status code",
            ["service", "method", "code"],
            registry=r,
        )
        self.rpc_duration = Histogram(
            "callfs_storage_node_rpc_duration_seconds",
            "RPC duration, streams included",
            ["service", "method"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.read_bytes = Counter(
            "callfs_storage_node_read_bytes_total", "Bytes sent by Read calls", registry=r
        )
        self.written_bytes = Counter(
            "callfs_storage_node_written_bytes_total",
            "Bytes stored by successful Write calls",
            registry=r,
        )
        self.fsync_duration = Histogram(
            "callfs_storage_node_fsync_duration_seconds",
            "fsync duration by what was synced (file, directory)",
            ["kind"],
            buckets=FSYNC_BUCKETS,
            registry=r,
        )
        self._volume: Volume | None = None
        r.register(_VolumeCollector(self))

    def watch(self, volume: Volume) -> None:
        """Report ``volume``'s usage (once: a node serves one volume)."""
        self._volume = volume

    @property
    def volume(self) -> Volume | None:
        """The volume reported on, if any."""
        return self._volume

    def observe_fsync(self, kind: str, seconds: float) -> None:
        """Record one fsync (called from the volume's worker threads)."""
        self.fsync_duration.labels(kind).observe(seconds)

    async def refresh(self) -> None:
        """Measure the volume's usage for a scrape, unless a walk at most
        :data:`SCRAPE_USAGE_MAX_AGE` seconds old answers; wait for a walk at most
        :data:`SCRAPE_USAGE_WAIT` seconds (it goes on in the background, and the
        scrape reports the previous answer).
        """
        if self._volume is None:
            return
        # A walk that is slow (TimeoutError) or fails (OSError, which Usage calls
        # report) leaves the previous answer standing.
        with contextlib.suppress(OSError):
            await asyncio.wait_for(
                self._volume.usage(max_age=SCRAPE_USAGE_MAX_AGE), SCRAPE_USAGE_WAIT
            )


class _VolumeCollector(Collector):
    """The volume gauges, from the last usage walk (nothing before the first)."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        volume = self._metrics.volume
        usage = None if volume is None else volume.last_usage
        if usage is None:
            return []
        return [
            _gauge(
                "callfs_storage_node_volume_capacity_bytes",
                "Size of the filesystem holding the volume",
                usage.total,
            ),
            _gauge(
                "callfs_storage_node_volume_used_bytes",
                "Bytes in the files under the volume's root (checksum sidecars included)",
                usage.used,
            ),
            _gauge(
                "callfs_storage_node_volume_free_bytes",
                "Free bytes on the filesystem holding the volume",
                usage.free,
            ),
            _gauge(
                "callfs_storage_node_volume_objects",
                "Stored files in the volume (sidecars and temp files left out)",
                usage.objects,
            ),
            _gauge(
                "callfs_storage_node_temp_files",
                "Temp files of writes in progress or interrupted in the volume",
                usage.temp_files,
            ),
        ]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Count every RPC by service, method and status code, and time it.

    First among the server's interceptors, it also counts the calls the others refuse.
    """

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = str(handler_call_details.method).lstrip("/").rpartition("/")
        return instrumented(handler, self._record(service, method))

    def _record(self, service: str, method: str) -> Record:
        duration = self._metrics.rpc_duration.labels(service, method)
        rpcs = self._metrics.rpcs

        def record(code: str, seconds: float) -> None:
            rpcs.labels(service, method, code).inc()
            duration.observe(seconds)

        return record


Record = Callable[[str, float], None]
"""Called once a call ends, with its status code's name (``OK``...) and its seconds."""


def instrumented(handler: Any, record: Record) -> Any:
    """A handler of the same shape as ``handler`` whose calls are recorded."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            _wrapped(handler.stream_stream, record), **codec
        )
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_wrapped(handler.stream_unary, record), **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_wrapped(handler.unary_stream, record), **codec)
    return grpc.unary_unary_rpc_method_handler(_wrapped(handler.unary_unary, record), **codec)


def _wrapped(behavior: Callable[..., Any], record: Record) -> Callable[..., Any]:
    """``behavior`` (a coroutine function or an async generator function), recorded."""
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            start = time.perf_counter()
            failure: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                record(_code(context, failure), time.perf_counter() - start)

        return streaming

    async def unary(request: Any, context: Any) -> Any:
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await behavior(request, context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            record(_code(context, failure), time.perf_counter() - start)

    return unary


_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _code(context: Any, failure: BaseException | None) -> str:
    """The status a call ended with: the one set on ``context`` (by an abort or
    ``set_code``), else ``CANCELLED`` for a cancelled call, ``OK`` without
    ``failure``, ``UNKNOWN`` with one.
    """
    if isinstance(failure, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, int) and not isinstance(code, bool):
        code = _BY_VALUE.get(code)
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if failure is not None else "OK"
