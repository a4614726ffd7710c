"""The storage-node gRPC server: build it, or serve it until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from callfs.settings import Settings, split_address
from callfs.storage.v1 import storage_pb2, storage_pb2_grpc
from callfs_storage_node import sweeper
from callfs_storage_node.auth import InternalSecretInterceptor
from callfs_storage_node.servicer import StorageNodeServicer
from callfs_storage_node.volume import Volume

logger = logging.getLogger(__name__)

SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageNode"].full_name
# Walking a large volume is costly; every gateway asks for usage every few seconds.
USAGE_MAX_AGE = 5.0


def build_server(
    settings: Settings,
    *,
    root: Path | None = None,
    listen: str | None = None,
    instance_id: str | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A storage-node server over ``root`` (default ``backend.localfs_root_path``),
    bound to ``listen`` (default ``storage_node.listen_addr``; port 0 picks one),
    known as ``instance_id`` (default ``instance_discovery.instance_id``).

    Returns the server (not started) and its bound port. Called on an event loop,
    it sweeps the temp files interrupted uploads left in the volume in the
    background; writes that start meanwhile are safe from that sweep.

    Raises:
        OSError: the address cannot be bound.
    """
    server, port, _, volume = _assemble(settings, root, listen, instance_id)
    _sweep_soon(volume)
    return server, port


def _assemble(
    settings: Settings, root: Path | None, listen: str | None, instance_id: str | None = None
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer, Volume]:
    volume_root = Path(root if root is not None else settings.backend.localfs_root_path)
    volume_root.mkdir(parents=True, exist_ok=True)
    volume = Volume(volume_root, usage_max_age=USAGE_MAX_AGE)
    limit = settings.storage_node.max_message_bytes
    server = grpc.aio.server(
        interceptors=[
            InternalSecretInterceptor(settings.auth.internal_proxy_secret.get_secret_value())
        ],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    identity = instance_id or settings.instance_discovery.instance_id
    servicer = StorageNodeServicer(volume, max_message_bytes=limit, instance_id=identity)
    storage_pb2_grpc.add_StorageNodeServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
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


async def serve(settings: Settings) -> None:
    """Sweep the volume's temp files, then serve until SIGTERM or SIGINT (sweeping
    stale ones meanwhile), then stop within ``storage_node.grace_period``.
    """
    server, _port, checks, volume = _assemble(settings, None, None)
    await sweeper.sweep_all(volume)
    async with sweeper.running(volume, grace=settings.storage_node.temp_grace):
        await checks.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        await server.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        try:
            await stopping.wait()
            logger.info("storage node stopping (grace %.1fs)", settings.storage_node.grace_period)
            await checks.enter_graceful_shutdown()
            await server.stop(settings.storage_node.grace_period)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
