"""The storage-node gRPC server: build it, or serve it (and its metrics listener) until
SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from callfs import logs
from callfs.serving import settle
from callfs.settings import Settings, split_address
from callfs.storage.inprocess import InProcessServer
from callfs.storage.wire import SERVICE
from callfs_storage_node import sweeper
from callfs_storage_node.auth import InternalSecretInterceptor
from callfs_storage_node.metrics import MetricsInterceptor, NodeMetrics
from callfs_storage_node.servicer import StorageNodeServicer, add_to_server
from callfs_storage_node.volume import Volume

if TYPE_CHECKING:
    from callfs.tracing.otel import Tracing

logger = logging.getLogger(__name__)

# Walking a large volume is costly; every gateway asks for usage every few seconds.
USAGE_MAX_AGE = 5.0


def build_server(
    settings: Settings,
    *,
    root: Path | None = None,
    listen: str | None = None,
    instance_id: str | None = None,
    metrics: NodeMetrics | None = None,
    tracing: Tracing | None = None,
    in_process: InProcessServer | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A storage-node server over ``root`` (default ``backend.localfs_root_path``),
    bound to ``listen`` (default ``storage_node.listen_addr``; port 0 picks one),
    known as ``instance_id`` (default ``instance_discovery.instance_id``), recording
    its RPCs, bytes, fsyncs and volume usage in ``metrics`` if given, and a span per
    RPC with ``tracing`` if given (the caller closes it). With ``in_process``, the
    same handlers, behind the same interceptors, also serve the channels of this
    process that :class:`~callfs.storage.inprocess.InProcessChannel` opens on it.

    Returns the server (not started) and its bound port. Called on an event loop,
    it sweeps the temp files interrupted uploads left in the volume in the
    background; writes that start meanwhile are safe from that sweep.

    Raises:
        OSError: the address cannot be bound.
    """
    server, port, _, volume = _assemble(
        settings, root, listen, instance_id, metrics, tracing, in_process
    )
    _sweep_soon(volume)
    return server, port


def _assemble(
    settings: Settings,
    root: Path | None,
    listen: str | None,
    instance_id: str | None = None,
    metrics: NodeMetrics | None = None,
    tracing: Tracing | None = None,
    in_process: InProcessServer | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer, Volume]:
    volume_root = Path(root if root is not None else settings.backend.localfs_root_path)
    volume_root.mkdir(parents=True, exist_ok=True)
    volume = Volume(
        volume_root,
        usage_max_age=USAGE_MAX_AGE,
        observe_fsync=None if metrics is None else metrics.observe_fsync,
    )
    interceptors: list[grpc.aio.ServerInterceptor] = [
        # Before the secret check: its refusals are logged with the request id too.
        RequestIdInterceptor(),
        InternalSecretInterceptor(settings.auth.internal_proxy_secret.get_secret_value()),
    ]
    if metrics is not None:
        metrics.watch(volume)
        # First: the calls the secret check refuses are counted too.
        interceptors.insert(0, MetricsInterceptor(metrics))
    if tracing is not None:
        from callfs_storage_node.tracing import TracingInterceptor

        interceptors.insert(0, TracingInterceptor(tracing.tracer))
    limit = settings.storage_node.max_message_bytes
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    identity = instance_id or settings.instance_discovery.instance_id
    servicer = StorageNodeServicer(
        volume, max_message_bytes=limit, instance_id=identity, metrics=metrics
    )
    add_to_server(servicer, server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    if in_process is not None:
        in_process.add_interceptors(interceptors)
        add_to_server(servicer, in_process)
        health_pb2_grpc.add_HealthServicer_to_server(checks, in_process)
    host, port = split_address(listen or settings.storage_node.listen_addr)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"storage node cannot listen on {address}: {exc}") from None
    if not bound:
        raise OSError(f"storage node cannot listen on {address}")
    logger.info(
        "storage node %s serves %s on port %d",
        identity,
        volume.root,
        bound,
    )
    return server, bound, checks, volume


class RequestIdInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Serve each call under the gateway's request id (metadata ``x-request-id``), so
    every line the node logs meanwhile carries it; log the call at debug level.

    Each call runs in its own task, entered after the interceptors: the id set here
    holds for that call alone (and for the volume's threads it starts).
    """

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        for key, value in handler_call_details.invocation_metadata or ():
            if key == logs.REQUEST_ID_HEADER:
                rid = logs.acceptable_request_id(value if isinstance(value, str) else None)
                if rid is not None:
                    logs.request_id.set(rid)
                break
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("call %s", handler_call_details.method)
        return await continuation(handler_call_details)


_sweeps: set[asyncio.Task[None]] = set()


def _sweep_soon(volume: Volume) -> None:
    """Remove a crash's temp files in the background once a loop runs."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(sweeper.sweep_all(volume))
    _sweeps.add(task)
    task.add_done_callback(_sweeps.discard)


async def serve(settings: Settings, metrics_socket: socket.socket | None = None) -> None:
    """Sweep the volume's temp files, then serve until SIGTERM or SIGINT (sweeping
    stale ones meanwhile), then stop within ``storage_node.grace_period``.

    Unless ``metrics.enabled`` is false, ``/metrics`` and ``/health`` are served on
    the metrics listener: ``metrics_socket`` if bound already, else
    ``metrics.listen_addr``, bound before the gRPC port. With ``tracing.otlp_endpoint``
    set, each RPC is a span, the last of them exported before it returns.

    Raises:
        ListenError: ``metrics.listen_addr`` cannot be bound.
        ModuleNotFoundError: tracing is on but the ``otel`` extra is not installed.
    """
    from callfs.serving import metrics_server
    from callfs.tracing import open_tracing

    tracing = open_tracing(settings.tracing, "storage-node")
    metrics = NodeMetrics() if settings.metrics.enabled else None
    listener = None if metrics is None else metrics_server(metrics, settings, metrics_socket)
    try:
        server, _port, checks, volume = _assemble(
            settings, None, None, metrics=metrics, tracing=tracing
        )
    except BaseException:
        if listener is not None:
            listener.sock.close()
        if tracing is not None:
            await tracing.close()
        raise
    scraping = None if listener is None else asyncio.create_task(listener.serve())
    try:
        await sweeper.sweep_all(volume)
        async with sweeper.running(volume, grace=settings.storage_node.temp_grace):
            await _serve_until_stopped(settings, server, checks, scraping)
    finally:
        if listener is not None and scraping is not None:
            listener.should_exit = True
            await asyncio.gather(scraping, return_exceptions=True)
        if tracing is not None:
            await tracing.close()


async def _serve_until_stopped(
    settings: Settings,
    server: grpc.aio.Server,
    checks: health.aio.HealthServicer,
    scraping: asyncio.Task[None] | None,
) -> None:
    """Serve until SIGTERM or SIGINT (or the metrics listener fails), then drain."""
    await checks.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    settle()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    signalled = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait(
            [signalled] if scraping is None else [signalled, scraping],
            return_when=asyncio.FIRST_COMPLETED,
        )
        logger.info("storage node stopping (grace %.1fs)", settings.storage_node.grace_period)
        await checks.enter_graceful_shutdown()
        await server.stop(settings.storage_node.grace_period)
        if scraping is not None and scraping.done():
            scraping.result()
    finally:
        signalled.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
