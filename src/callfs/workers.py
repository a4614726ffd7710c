"""Several processes serving one web role: ``server.workers``.

The parent binds the API socket (and the metrics one) and forks the workers, then only
supervises: it runs no event loop and starts no thread, so it can fork a replacement at
any time. Each worker serves the API on the shared socket, where the kernel hands each
new connection to one of them, and its own metrics on a Unix socket. One more child
serves ``metrics.listen_addr``: every worker's metrics joined, each series labelled
with its ``worker``, and ``callfs_worker_up`` saying which workers answered.

A child that dies after it served is replaced. One that dies before it ever served
has failed to start (settings, a dependency): the role stops with exit code 1 rather
than start it again and again. A child that serves says so on a pipe, and then again
every :data:`BEAT` seconds from its event loop: one silent for
``server.worker_timeout`` (its loop stuck, the process stopped) is killed, and so
replaced. SIGTERM or SIGINT reaches every child, and the parent
waits ``server.shutdown_timeout`` (then a few seconds more) before it kills what is
left. A child dies with its parent, so a parent killed outright leaves no worker
serving on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from starlette.types import ASGIApp

from callfs.metrics import OPENMETRICS_CONTENT_TYPE
from callfs.serving import api_server, metrics_server, serve_all
from callfs.settings import Settings

logger = logging.getLogger(__name__)

AppFactory = Callable[[], ASGIApp]
"""Builds a worker's app, in the worker (after the fork): its ``state.metrics`` is what
the worker's metrics listener serves."""

Serve = Callable[[Callable[[], None]], None]
"""What a child runs: it serves until stopped, and calls its argument once it serves."""

STOP_GRACE = 5.0
"""Seconds a stopping child gets beyond ``server.shutdown_timeout`` before it is killed."""

SCRAPE_TIMEOUT = 5.0
"""Seconds a worker has to answer the metrics child's scrape."""

BEAT = 1.0
"""Seconds between a serving child's heartbeats, and between the parent's looks at them."""

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
_PR_SET_PDEATHSIG = 1


@dataclass
class _Child:
    """One forked child: the worker index it serves as (-1: the metrics child), its pid,
    the pipe on which it says that it serves (and then that it still does), whether it
    said so, and when it last did."""

    index: int
    pid: int
    served: int
    said: bool = False
    heard: float = 0.0
    killed: bool = False

    def listen(self, now: float) -> None:
        """Take what the child said since the last look (the pipe does not block)."""
        try:
            while os.read(self.served, 4096):
                self.said, self.heard = True, now
        except BlockingIOError:
            pass


def supervise(
    settings: Settings,
    count: int,
    api: socket.socket,
    metrics: socket.socket | None,
    app: AppFactory,
) -> int:
    """Serve ``api`` with ``count`` worker processes (and ``metrics`` from one more) until
    SIGTERM or SIGINT; the exit code: 0 after a stop, 1 when a child failed to start."""
    scratch = Path(tempfile.mkdtemp(prefix="callfs-workers-"))
    sockets = [scratch / f"worker-{index}.sock" for index in range(count)]
    # Blocked before the first fork and taken by sigwaitinfo/sigtimedwait: no handler runs.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    children: dict[int, _Child] = {}

    def start(index: int) -> None:
        if index < 0:
            assert metrics is not None
            child = _fork(index, _serve_joined(settings, metrics, sockets), (api,))
        elif metrics is None:
            child = _fork(index, _serve_worker(settings, app, api, None), ())
        else:
            path = sockets[index]
            path.unlink(missing_ok=True)
            child = _fork(index, _serve_worker(settings, app, api, path), (metrics,))
        children[child.pid] = child

    code = 0
    try:
        for index in range(count):
            start(index)
        if metrics is not None:
            start(-1)
        logger.info(
            "%d worker processes serve %s (metrics: %s)",
            count,
            _address(api),
            "off" if metrics is None else _address(metrics),
        )
        code = _run(children, start, settings.server.worker_timeout)
    finally:
        _stop(children, settings.server.shutdown_timeout + STOP_GRACE)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        shutil.rmtree(scratch, ignore_errors=True)
    return code


def _run(children: dict[int, _Child], start: Callable[[int], None], timeout: float) -> int:
    """Wait for a stop signal, replacing children that die and killing those silent for
    ``timeout`` seconds (0: never); 1 if one failed to start."""
    while True:
        info = signal.sigtimedwait(_SIGNALS, BEAT)
        if info is not None and info.si_signo != signal.SIGCHLD:
            logger.info(
                "stopping %d processes (%s)", len(children), signal.strsignal(info.si_signo)
            )
            return 0
        if timeout:
            _kill_silent(children.values(), timeout)
        if info is None:
            continue
        for child, status in _reap(children):
            name = _name(child.index)
            if not _served(child):
                logger.error("%s failed to start (%s): stopping", name, _describe(status))
                return 1
            logger.warning("%s ended (%s): starting another", name, _describe(status))
            start(child.index)


def _kill_silent(children: Iterable[_Child], timeout: float) -> None:
    """SIGKILL each child that served but has not said so for ``timeout`` seconds."""
    now = time.monotonic()
    for child in children:
        child.listen(now)
        if child.said and not child.killed and now - child.heard >= timeout:
            logger.error(
                "%s has not answered for %.0fs (server.worker_timeout): killed",
                _name(child.index),
                now - child.heard,
            )
            child.killed = True
            _signal(child.pid, signal.SIGKILL)


def _stop(children: dict[int, _Child], timeout: float) -> None:
    """SIGTERM every child, wait up to ``timeout`` seconds for them all, kill the rest."""
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while children:
        left = deadline - time.monotonic()
        if left <= 0:
            for pid in children:
                logger.warning("%s did not stop in time: killed", _name(children[pid].index))
                _signal(pid, signal.SIGKILL)
            deadline = float("inf")
        signal.sigtimedwait(_SIGNALS, min(left, 1.0) if left > 0 else 1.0)
        for child, _status in _reap(children):
            os.close(child.served)


def _reap(children: dict[int, _Child]) -> Iterable[tuple[_Child, int]]:
    """The children that have ended, each with its wait status, taken out of ``children``."""
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        child = children.pop(pid, None)
        if child is not None:
            yield child, status


def _served(child: _Child) -> bool:
    """Whether ``child`` said that it serves, before it ended (its pipe is then closed)."""
    child.listen(time.monotonic())
    os.close(child.served)
    return child.said


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _name(index: int) -> str:
    return "the metrics process" if index < 0 else f"worker {index}"


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _fork(index: int, serve: Serve, closed: Iterable[socket.socket]) -> _Child:
    """Fork a child that runs ``serve(serving)``, ``serving`` being what it calls once it
    serves, and ends with it."""
    served, says = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(says)
        os.set_blocking(served, False)
        return _Child(index, pid, served)
    _child(_name(index), parent, (served, says), serve, closed)


def _child(
    name: str,
    parent: int,
    pipe: tuple[int, int],
    serve: Serve,
    closed: Iterable[socket.socket],
) -> NoReturn:
    """The forked child ``name``: ``serve`` until stopped, then exit (0, or 1 on an
    error); ``pipe``'s write end says when it serves."""
    served, says = pipe
    code = 1
    try:
        os.close(served)
        for sock in closed:
            sock.close()
        _die_with(parent)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)

        def serving() -> None:
            os.set_blocking(says, False)
            _beat(says, asyncio.get_running_loop())

        serve(serving)
        code = 0
    except BaseException:
        logger.exception("%s ended on an error", name)
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _beat(says: int, loop: asyncio.AbstractEventLoop) -> None:
    """Tell the parent that this child serves, now and every :data:`BEAT` seconds that
    its loop runs (a beat the full pipe cannot take is one the parent needs no more)."""
    with contextlib.suppress(BlockingIOError, BrokenPipeError):
        os.write(says, b"1")
    loop.call_later(BEAT, _beat, says, loop)


def _die_with(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); if the parent
    is gone already, end now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _bind_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    return sock


def _serve_worker(
    settings: Settings, app: AppFactory, api: socket.socket, metrics_path: Path | None
) -> Serve:
    """A worker: the API on the shared socket, its own metrics on ``metrics_path``."""

    def serve(serving: Callable[[], None]) -> None:
        built: Any = app()
        metrics = None
        if metrics_path is not None:
            metrics = metrics_server(built.state.metrics, settings, _bind_unix(metrics_path))
        _run_loop(serve_all(api_server(built, settings, api), metrics, serving=serving))

    return serve


def _serve_joined(settings: Settings, sock: socket.socket, workers: list[Path]) -> Serve:
    """The metrics child: every worker's metrics, joined, on ``metrics.listen_addr``."""

    def serve(serving: Callable[[], None]) -> None:
        _run_loop(
            serve_all(metrics_server(JoinedMetrics(workers), settings, sock), serving=serving)
        )

    return serve


def _run_loop(main: Any) -> None:
    from callfs.cli import run_loop

    run_loop(main)


class JoinedMetrics:
    """The metrics of the workers listening on ``workers`` (one Unix socket each), as
    one registry: each series gains a ``worker`` label (its index), and
    ``callfs_worker_up`` says which workers answered the last scrape."""

    def __init__(self, workers: list[Path]) -> None:
        self.workers = workers
        self.registry = CollectorRegistry(auto_describe=False)
        self._families: list[Metric] = []
        self.registry.register(self)

    async def refresh(self) -> None:
        texts = await asyncio.gather(*(self._scrape(path) for path in self.workers))
        families: dict[str, Metric] = {}
        up = Metric("callfs_worker_up", "Whether the worker answered this scrape", "gauge")
        for index, text in enumerate(texts):
            up.add_sample("callfs_worker_up", {"worker": str(index)}, float(text is not None))
            if text is None:
                continue
            for family in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
                joined = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type, family.unit)
                )
                joined.samples.extend(
                    sample._replace(labels={**sample.labels, "worker": str(index)})
                    for sample in family.samples
                )
        self._families = [up, *families.values()]

    def collect(self) -> list[Metric]:
        return self._families

    async def _scrape(self, path: Path) -> str | None:
        """The OpenMetrics text of the worker on ``path``; None if it does not answer."""
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        try:
            async with httpx.AsyncClient(transport=transport, timeout=SCRAPE_TIMEOUT) as client:
                response = await client.get(
                    "http://worker/metrics", headers={"Accept": OPENMETRICS_CONTENT_TYPE}
                )
                response.raise_for_status()
                return response.text
        except httpx.HTTPError as exc:
            logger.warning("worker metrics on %s: %s", path.name, exc)
            return None
