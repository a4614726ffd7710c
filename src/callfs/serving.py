"""Serving ASGI apps with uvicorn: the API listener (HTTP or HTTPS) and the metrics listener."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from callfs.errors import CallFSError
from callfs.metrics import CONTENT_TYPE, Metrics
from callfs.settings import Settings, SettingsError, split_address
from callfs.tls import self_signed

logger = logging.getLogger(__name__)


class MetricsApp:
    """The dedicated metrics listener: ``/metrics`` without auth, ``/health``; nothing else."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics":
            status, body, ctype = 200, self.metrics.render(), CONTENT_TYPE
        elif scope["path"] == "/health":
            status, body, ctype = 200, b'{"status":"ok"}', "application/json"
        else:
            status, body, ctype = (
                404,
                b'{"code":"FILE_NOT_FOUND","message":"no such endpoint"}',
                ("application/json"),
            )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def tls_options(settings: Settings, scratch: Path | None = None) -> dict[str, Any]:
    """uvicorn's TLS keyword arguments for ``server.protocol``.

    Raises:
        SettingsError: https without a certificate and key.
    """
    server = settings.server
    if server.protocol == "http":
        return {}
    if server.cert_file and server.key_file:
        return {"ssl_certfile": server.cert_file, "ssl_keyfile": server.key_file}
    if server.protocol == "https":
        raise SettingsError(
            "server.cert_file and server.key_file (CALLFS_SERVER_CERT_FILE, "
            "CALLFS_SERVER_KEY_FILE) are required when server.protocol=https"
        )
    directory = scratch or Path(tempfile.mkdtemp(prefix="callfs-tls-"))
    cert, key = self_signed(directory)
    logger.warning("protocol auto: serving a self-signed certificate (%s)", cert)
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def api_server(app: ASGIApp, settings: Settings, listen: str | None = None) -> uvicorn.Server:
    """A uvicorn server for an API app on ``server.listen_addr`` (or ``listen``)."""
    host, port = split_address(listen or settings.server.listen_addr)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # X-Forwarded-For is judged by the app against server.trusted_proxies, not by uvicorn.
        proxy_headers=False,
        timeout_keep_alive=int(settings.server.idle_timeout),
        timeout_graceful_shutdown=int(settings.server.write_timeout),
        **tls_options(settings),
    )
    return uvicorn.Server(config)


def metrics_server(metrics: Metrics, settings: Settings) -> uvicorn.Server | None:
    """A uvicorn server for the metrics listener, unless disabled."""
    if not settings.metrics.enabled:
        return None
    host, port = split_address(settings.metrics.listen_addr)
    config = uvicorn.Config(
        MetricsApp(metrics),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    return uvicorn.Server(config)


async def serve_all(*servers: uvicorn.Server | None) -> None:
    """Run servers together until one stops (SIGTERM/SIGINT stop them all)."""
    active = [s for s in servers if s is not None]
    tasks = [asyncio.create_task(s.serve()) for s in active]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for server in active:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (for ``:0`` listeners)."""
    for listener in server.servers:
        for sock in listener.sockets:
            port: int = sock.getsockname()[1]
            return port
    raise CallFSError("server is not listening")
