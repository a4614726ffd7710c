"""Serving ASGI apps with uvicorn: the API listener (HTTP or HTTPS) and the metrics listener."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from callfs.connections import Limits, guarded
from callfs.errors import CallFSError
from callfs.metrics import Exposed, exposition
from callfs.settings import Settings, SettingsError, split_address
from callfs.tls import self_signed
from callfs.web import SECURITY_HEADERS

logger = logging.getLogger(__name__)


class MetricsApp:
    """The dedicated metrics listener: ``/metrics`` without auth, ``/health``; nothing else.

    ``/metrics`` answers in OpenMetrics when the scrape's ``Accept`` asks for it, else
    in the Prometheus text format (:func:`callfs.metrics.exposition`). Every answer
    carries the API's security headers (:data:`callfs.web.SECURITY_HEADERS`).
    """

    def __init__(self, metrics: Exposed) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics":
            await self.metrics.refresh()
            accept = b", ".join(v for k, v in scope["headers"] if k == b"accept")
            body, ctype = exposition(self.metrics.registry, accept.decode("latin-1"))
            status = 200
        elif scope["path"] == "/health":
            status, body, ctype = 200, b'{"status":"ok"}', "application/json"
        else:
            status, body, ctype = (
                404,
                b'{"code":"NOT_FOUND","message":"no such endpoint"}',
                "application/json",
            )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *SECURITY_HEADERS,
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


def connection_limits(settings: Settings) -> Limits:
    """What every HTTP listener grants a client (see :mod:`callfs.connections`)."""
    server = settings.server
    return Limits(
        idle=server.idle_timeout,
        read=server.read_timeout,
        write=server.write_timeout,
        max_header_bytes=server.max_header_bytes,
    )


# Connections the kernel queues before the server accepts them (capped by the kernel's
# net.core.somaxconn). Python's default of 128 is below what one burst of clients opens
# at once (wrk's 256 connections, a load balancer's pool): the rest had their SYNs
# dropped and retried after 1 s, 3 s, ..., seconds of latency for nothing. As uvicorn's.
LISTEN_BACKLOG = 2048


class ListenError(OSError):
    """A listener's address cannot be bound; the message names the setting that chose it."""


def bind(setting: str, addr: str) -> socket.socket:
    """A TCP socket listening on ``addr``, the value of ``setting``.

    Raises:
        ListenError: the address is already in use or cannot be bound.
    """
    host, port = split_address(addr)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        # As asyncio's own listeners: a port in TIME_WAIT is reusable, IPv6 means IPv6.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        problem = (
            "is already in use"
            if exc.errno == errno.EADDRINUSE
            else f"cannot be bound ({exc.strerror or exc})"
        )
        raise ListenError(f"{setting} {addr} {problem}") from None
    return sock


def bind_web(settings: Settings) -> tuple[socket.socket, socket.socket | None]:
    """The sockets of a web role's API listener and metrics listener (None if disabled),
    bound before anything starts.

    Raises:
        ListenError: either address cannot be bound (nothing is left open).
    """
    api = bind("server.listen_addr", settings.server.listen_addr)
    if not settings.metrics.enabled:
        return api, None
    try:
        return api, bind("metrics.listen_addr", settings.metrics.listen_addr)
    except BaseException:
        api.close()
        raise


class Listener(uvicorn.Server):
    """A uvicorn server on a socket bound before it was built: a taken address is
    reported before the app starts (uvicorn binds only after the app's start-up)."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket) -> None:
        super().__init__(config)
        self.sock = sock

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        address = self.sock.getsockname()
        if self.sock.family == socket.AF_UNIX:
            logger.debug("listening on %s", address)
        else:
            logger.info("listening on %s:%d", *address[:2])
        try:
            await super().serve([self.sock] if sockets is None else sockets)
        finally:
            self.sock.close()


def api_server(app: ASGIApp, settings: Settings, sock: socket.socket | None = None) -> Listener:
    """A server for an API app on ``sock`` (default: bind ``server.listen_addr`` now).

    Raises:
        ListenError: ``server.listen_addr`` cannot be bound.
    """
    if sock is None:
        sock = bind("server.listen_addr", settings.server.listen_addr)
    try:
        config = uvicorn.Config(
            app,
            loop="uvloop",
            http=guarded(connection_limits(settings)),
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            # X-Forwarded-For is judged by the app against server.trusted_proxies, not by
            # uvicorn.
            proxy_headers=False,
            timeout_keep_alive=max(1, round(settings.server.idle_timeout)),
            timeout_graceful_shutdown=max(1, round(settings.server.shutdown_timeout)),
            **tls_options(settings),
        )
    except BaseException:
        sock.close()
        raise
    return Listener(config, sock)


def metrics_server(
    metrics: Exposed, settings: Settings, sock: socket.socket | None = None
) -> Listener | None:
    """A server for the metrics listener on ``sock`` (default: bind
    ``metrics.listen_addr`` now), unless disabled.

    Raises:
        ListenError: ``metrics.listen_addr`` cannot be bound.
    """
    if not settings.metrics.enabled:
        return None
    config = uvicorn.Config(
        MetricsApp(metrics),
        loop="uvloop",
        http=guarded(connection_limits(settings)),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    if sock is None:
        sock = bind("metrics.listen_addr", settings.metrics.listen_addr)
    return Listener(config, sock)


async def serve_all(
    *servers: uvicorn.Server | None, serving: Callable[[], None] | None = None
) -> None:
    """Run servers together until one stops (SIGTERM/SIGINT stop them all); once all
    have started, :func:`settle` the heap and call ``serving``."""
    active = [s for s in servers if s is not None]
    tasks = [asyncio.create_task(s.serve()) for s in active]
    try:
        if await started(active, tasks):
            settle()
            if serving is not None:
                serving()
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for server in active:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


STARTED_POLL = 0.05
"""Seconds between two looks at whether a starting server serves yet (uvicorn says so
only by its ``started`` flag)."""


async def started(servers: Sequence[uvicorn.Server], tasks: Sequence[asyncio.Task[Any]]) -> bool:
    """Wait until every one of ``servers`` serves (True), or one of the ``tasks``
    serving them has ended first (False)."""
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            return False
        await asyncio.sleep(STARTED_POLL)
    return True


def settle() -> None:
    """Once a role serves: collect, then freeze what start-up built (the modules, the
    app, the runtime), which lives as long as the process, out of the cyclic collector's
    sight. Otherwise each full collection walks those hundreds of thousands of objects
    again to free none of them: 40-60 ms with the event loop held, measured during big
    listings, which create enough short-lived objects to set full collections off every
    second or so. Objects made later are collected as before.
    """
    gc.collect()
    gc.freeze()


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (for ``:0`` listeners)."""
    for listener in server.servers:
        for sock in listener.sockets:
            port: int = sock.getsockname()[1]
            return port
    raise CallFSError("server is not listening")
