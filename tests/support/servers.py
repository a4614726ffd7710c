"""Throwaway PostgreSQL and Redis servers for tests and local clusters.

Plain Python (no pytest): the suite's fixtures and the local-cluster script both
launch them. ``PostgresInstance`` and ``RedisInstance`` speak to any reachable
server (an external one from the environment); ``PostgresServer`` and
``RedisServer`` also start one on a free loopback port in a temporary folder and
remove every trace of it on ``stop()``.

Neither server can listen on port 0 and say which port it got, so each is given a
port that was free a moment ago. Another process may take it first: the server
then fails to bind and exits, and start-up tries again on a new port. Readiness is
asked of our own process only, so a server that already held the port never passes
for ours.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import asyncpg
import redis

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_PR_SET_PDEATHSIG = 1

_running: set[_Process] = set()
_running_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers, while the block
    runs (an address that is taken, or a server that hangs)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port: int = holder.getsockname()[1]
        yield port


def _die_with_parent(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``signum`` when its parent dies.

    Linux delivers the signal when the *thread* that forked the child exits, so it
    is only armed for children started from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)

    return arm


class _Process:
    """A server process with its log, stopped by a signal, killed if it lingers."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes], stop_signal: int) -> None:
        self.process = process
        self.log = log
        self.stop_signal = stop_signal
        with _running_lock:
            _running.add(self)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # The server leads its own process group: take its children too.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        with _running_lock:
            _running.discard(self)


@atexit.register
def _stop_all() -> None:
    """Stop whatever a crashed test session or script left running."""
    with _running_lock:
        leftovers = list(_running)
    for process in leftovers:
        process.stop()


def _log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _run_async(factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, factory()).result()


class _Throwaway:
    """What both throwaway servers share: a temp folder, one server process, outages."""

    prefix = "callfs-"

    def _setup(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        self.workdir: Path | None = None
        self.port = 0
        self._server: _Process | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._server.process.pid if self._server else None

    def _start(self, attempts: int, prepare: Callable[[], None], serve: Callable[[], None]) -> None:
        """Make the folder, ``prepare`` it, then ``serve`` (tried ``attempts`` times)."""
        if self._server is not None:
            return
        self.workdir = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self.base_dir))
        try:
            prepare()
            for attempt in range(attempts):
                try:
                    serve()
                    return
                except RuntimeError:
                    self._halt()
                    if attempt == attempts - 1:
                        raise
        except BaseException:
            self.stop()
            raise

    def _halt(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def halt(self) -> None:
        """Stop the server, keeping its folder, as in an outage; ``resume`` serves again."""
        self._halt()

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        self._halt()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def start(self, attempts: int = 3) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# --- PostgreSQL ---------------------------------------------------------------------


def postgres_binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``: PATH first, else the newest install."""
    found = shutil.which("initdb")
    if found:
        folder = Path(found).resolve().parent
        if (folder / "postgres").is_file():
            return folder
    installs = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in folder.parent.name.split(".") if part.isdigit())

    if not installs:
        raise RuntimeError("PostgreSQL is not installed (no initdb on PATH or in /usr/lib)")
    return max(installs, key=version)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresInstance:
    """A reachable PostgreSQL server, named by a superuser DSN; creates and drops databases."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn

    def dsn(self, database: str) -> str:
        """The admin DSN pointed at ``database``."""
        parts = urllib.parse.urlsplit(self.admin_dsn)
        return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(database)))

    def execute(self, sql: str) -> None:
        """Run one statement as the superuser (outside any transaction)."""

        async def run() -> None:
            connection = await asyncpg.connect(self.admin_dsn)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        _run_async(run)

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` and return its DSN."""
        self.execute(f"CREATE DATABASE {_quote_identifier(name)}")
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever still uses it."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")


class PostgresServer(_Throwaway, PostgresInstance):
    """A throwaway PostgreSQL cluster: trust auth, no durability, loopback only.

    As root it runs as the ``postgres`` system user (else ``nobody``), since
    PostgreSQL refuses to run as root.
    """

    user = "postgres"
    prefix = "callfs-pg-"

    def __init__(self, base_dir: Path | None = None) -> None:
        PostgresInstance.__init__(self, "")
        self._setup(base_dir)

    def _credentials(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return entry.pw_uid, entry.pw_gid
        raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")

    def start(self, attempts: int = 3) -> Self:
        """Create a cluster and serve it on a free port; return once it accepts connections."""
        binaries = postgres_binaries()
        credentials = self._credentials()

        def prepare() -> None:
            assert self.workdir is not None
            if credentials is not None:
                os.chown(self.workdir, *credentials)
            self._initdb(binaries, credentials)

        self._start(attempts, prepare, lambda: self._serve(binaries, credentials))
        return self

    def _spawn(
        self, command: list[str], credentials: tuple[int, int] | None, log: IO[bytes], **extra: Any
    ) -> subprocess.Popen[bytes]:
        if credentials is not None:
            extra.update(user=credentials[0], group=credentials[1], extra_groups=[])
        return subprocess.Popen(
            command,
            cwd=self.workdir,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "LANG": "C"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            **extra,
        )

    def _initdb(self, binaries: Path, credentials: tuple[int, int] | None) -> None:
        assert self.workdir is not None
        command = [
            str(binaries / "initdb"),
            f"--pgdata={self.workdir / 'data'}",
            f"--username={self.user}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        with (self.workdir / "initdb.log").open("wb") as log:
            process = self._spawn(
                command, credentials, log, preexec_fn=_die_with_parent(signal.SIGKILL)
            )
            if process.wait(START_TIMEOUT) != 0:
                raise RuntimeError(f"initdb failed:\n{_log_tail(self.workdir / 'initdb.log')}")
        sockets = self.workdir / "sockets"
        sockets.mkdir()
        if credentials is not None:
            os.chown(sockets, *credentials)

    def _serve(
        self, binaries: Path, credentials: tuple[int, int] | None, port: int | None = None
    ) -> None:
        assert self.workdir is not None
        self.port = port or free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.workdir / "sockets"),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
        }
        command = [str(binaries / "postgres"), "-D", str(self.workdir / "data")]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        log_path = self.workdir / "postgres.log"
        log = log_path.open("ab")
        process = self._spawn(
            command,
            credentials,
            log,
            start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGQUIT),
        )
        self._server = _Process(process, log, signal.SIGINT)
        self.admin_dsn = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"postgres exited early:\n{_log_tail(log_path)}")
            if self._accepts(binaries):
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not start in {START_TIMEOUT}s:\n{_log_tail(log_path)}")

    def _accepts(self, binaries: Path) -> bool:
        # Through our own socket folder, so only our server can answer; postgres opens
        # it after binding the TCP port, and exits if that bind fails.
        assert self.workdir is not None
        sockets = str(self.workdir / "sockets")
        probe = [str(binaries / "pg_isready"), "-q", "-h", sockets, "-p", str(self.port)]
        probe += ["-U", self.user, "-d", "postgres", "-t", "1"]
        return subprocess.run(probe, stdin=subprocess.DEVNULL, check=False).returncode == 0

    def resume(self) -> None:
        """Serve the kept data again on the same port."""
        assert self.workdir is not None and self._server is None
        self._serve(postgres_binaries(), self._credentials(), port=self.port)


# --- Redis --------------------------------------------------------------------------


class RedisInstance:
    """A reachable Redis server, named by its URL."""

    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    def client(self) -> redis.Redis:
        """A new synchronous client; the caller closes it."""
        return redis.Redis.from_url(self.url, socket_connect_timeout=1.0, socket_timeout=5.0)

    def flushall(self) -> None:
        """Delete every key in every database."""
        with self.client() as client:
            client.flushall()

    def answers(self) -> bool:
        """True when the server replies to PING."""
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False


class RedisServer(_Throwaway, RedisInstance):
    """A throwaway ``redis-server`` on a free loopback port, with no persistence."""

    prefix = "callfs-redis-"

    def __init__(self, base_dir: Path | None = None) -> None:
        RedisInstance.__init__(self, "")
        self._setup(base_dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, attempts: int = 3) -> Self:
        """Start on a free port; return once it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self._start(attempts, lambda: None, lambda: self._serve(binary))
        return self

    def _serve(self, binary: str, port: int | None = None) -> None:
        assert self.workdir is not None
        self.port = port or free_port()
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        log_path = self.workdir / "redis.log"
        log = log_path.open("ab")
        process = subprocess.Popen(
            command,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGKILL),
        )
        self._server = _Process(process, log, signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{_log_tail(log_path)}")
            # Ours, not a Redis that held the port first (ours then exits, and is retried).
            if self._answering_pid() == process.pid:
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start in {START_TIMEOUT}s")

    def _answering_pid(self) -> int | None:
        """The process id of the Redis that answers at :attr:`url`, if one does."""
        try:
            with self.client() as client:
                info = client.info("server")
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return None
        pid = info.get("process_id")
        return pid if isinstance(pid, int) else None

    def resume(self) -> None:
        """Serve again on the same port (Redis keeps nothing: it starts empty)."""
        binary = shutil.which("redis-server")
        assert binary is not None and self.workdir is not None and self._server is None
        self._serve(binary, port=self.port)
