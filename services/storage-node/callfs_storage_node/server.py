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
from callfs_storage_node.auth import InternalSecretInterceptor
from callfs_storage_node.servicer import StorageNodeServicer
from callfs_storage_node.volume import Volume

logger = logging.getLogger(__name__)

SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageNode"].full_name
# Only this node writes its volume, so at start-up a temp file untouched this long
# is a crash's leftover, never a write in progress.
STALE_TEMP_SECONDS = 300.0
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

    Returns the server (not started) and its bound port.

    Raises:
        OSError: the address cannot be bound.
    """
    server, port, _ = _assemble(settings, root, listen, instance_id)
    return server, port


def _assemble(
    settings: Settings, root: Path | None, listen: str | None, instance_id: str | None = None
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
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
    _sweep_soon(volume)
    logger.info(
        "storage node %s serves %s on port %d",
        identity,
        volume.root,
        bound,
    )
    return server, bound, checks


_sweeps: set[asyncio.Task[None]] = set()


def _sweep_soon(volume: Volume) -> None:
    """Remove a crash's temp files in the background once a loop runs."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(_sweep(volume))
    _sweeps.add(task)
    task.add_done_callback(_sweeps.discard)


async def _sweep(volume: Volume) -> None:
    try:
        await volume.sweep_temp_files(STALE_TEMP_SECONDS)
    except OSError as exc:
        logger.warning("could not sweep temp files under %s: %s", volume.root, exc)


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop within ``storage_node.grace_period``."""
    server, _port, checks = _assemble(settings, None, None)
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
