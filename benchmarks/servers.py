"""The servers under test: ``callfs dev``, Debian's nginx with WebDAV, ``weed server -filer``.

Each one runs in its own process group under a scratch folder, on free loopback
ports, and is stopped (and killed if it lingers) by ``stop()``. ``Endpoint`` is
what the load generators need to know about a server: where a file lives and how
to authenticate.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.s3_server import SeaweedS3Server, free_port, http_answers

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
DAV_EXT_MODULE = Path("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so")


@dataclass(frozen=True)
class Endpoint:
    """Where a server stores files over HTTP, and the curl arguments that authenticate."""

    name: str
    base: str
    auth: tuple[str, ...] = ()

    def url(self, path: str) -> str:
        """The URL of the file ``path`` (relative, no leading slash)."""
        return f"{self.base}/{path}"

    @property
    def headers(self) -> tuple[str, ...]:
        """The ``-H`` values among ``auth``, which wrk takes too."""
        pairs = zip(self.auth, self.auth[1:], strict=False)
        return tuple(value for flag, value in pairs if flag == "-H")


class Process:
    """A server started in its own process group, with its output in a log file."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id.

        Raises:
            RuntimeError: the server is not running.
        """
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._process.pid

    def launch(self, command: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``command`` in a new session, output to the log."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until(self, url: str) -> None:
        """Return once ``url`` answers any HTTP status.

        Raises:
            RuntimeError: the process exited or did not answer within START_TIMEOUT.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if http_answers(url):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer in {START_TIMEOUT}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output, for error messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        # Children (nginx workers) may outlive a leader that exited on its own.
        _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


class CallFSDev(Process):
    """``callfs dev`` (gateway and two storage nodes in one process) on a free port."""

    api_key = "callfs-bench-key-0123456789"

    def __init__(self, workdir: Path, environment: dict[str, str] | None = None) -> None:
        super().__init__("callfs", workdir)
        self.environment = environment or {}
        self.port = 0

    def start(self) -> Endpoint:
        """Start and wait until ``/health`` answers; the endpoint serves ``/v1/files``."""
        self.port = free_port()
        env = {
            **os.environ,
            **self.environment,
            "CALLFS_SERVER_LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "CALLFS_METRICS_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
            "CALLFS_AUTH_API_KEYS": self.api_key,
        }
        command = [str(_callfs_command()), "dev", "--data-dir", str(self.workdir / "data")]
        self.launch(command, env)
        base = f"http://127.0.0.1:{self.port}"
        self.wait_until(base + "/health")
        return Endpoint(
            "CallFS", base + "/v1/files", ("-H", f"Authorization: Bearer {self.api_key}")
        )


def _callfs_command() -> Path:
    """The ``callfs`` console script of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("callfs")
    if beside.exists():
        return beside
    found = shutil.which("callfs")
    if found is None:
        raise RuntimeError("the callfs command is not installed (make install)")
    return Path(found)


class Nginx(Process):
    """Debian's nginx serving a folder: GET with sendfile, PUT through its DAV module."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("nginx", workdir)
        self.port = 0

    def start(self) -> Endpoint:
        """Write the config, start nginx and wait until it answers."""
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed (make system-deps)")
        self.port = free_port()
        (self.workdir / "root").mkdir(parents=True, exist_ok=True)
        config = self.workdir / "nginx.conf"
        config.write_text(self.config())
        log = self.workdir / "error.log"
        self.launch([binary, "-p", str(self.workdir), "-c", str(config), "-e", str(log)])
        base = f"http://127.0.0.1:{self.port}"
        self.wait_until(base + "/")
        return Endpoint("nginx", base)

    def config(self) -> str:
        """nginx.conf: sendfile on, no body size limit, DAV PUT, everything in the workdir."""
        root = self.workdir
        lines = []
        if DAV_EXT_MODULE.exists():
            lines.append(f"load_module {DAV_EXT_MODULE};")
        if os.geteuid() == 0:
            # Workers must write into a folder the harness (root) created.
            lines.append("user root;")
        temp_paths = "\n".join(
            f"    {kind}_temp_path {root / ('tmp-' + kind)};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        dav_ext = "        dav_ext_methods PROPFIND OPTIONS;\n" if DAV_EXT_MODULE.exists() else ""
        lines.append(
            f"""worker_processes auto;
daemon off;
master_process on;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_max_body_size 0;
    default_type application/octet-stream;
{temp_paths}
    server {{
        listen 127.0.0.1:{self.port};
        root {root / "root"};
        location / {{
            dav_methods PUT DELETE MKCOL;
{dav_ext}            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"""
        )
        return "\n".join(lines)


class Seaweed(SeaweedS3Server):
    """``weed server -filer -s3`` on SeaweedFS's own volume defaults.

    The test fixture this builds on shrinks volumes and their growth so that many
    small buckets fit; a benchmark undoes that and runs SeaweedFS as shipped.
    """

    def _command(self) -> list[str]:
        command = super()._command()
        (self.workdir / "master.toml").unlink(missing_ok=True)
        return [arg for arg in command if not arg.startswith("-master.volumeSizeLimitMB=")]

    def filer(self) -> Endpoint:
        """The filer's HTTP API: PUT and GET any path."""
        return Endpoint("SeaweedFS", f"http://127.0.0.1:{self._ports['filer']}")

    def s3(self, bucket: str) -> Endpoint:
        """The S3 gateway's ``bucket``, signed by curl's SigV4."""
        # curl 7.88 signs an empty payload hash unless told the payload is unsigned.
        auth = (
            "--aws-sigv4",
            f"aws:amz:{self.region}:s3",
            "--user",
            f"{self.access_key}:{self.secret_key}",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        )
        return Endpoint("SeaweedFS S3", f"{self.endpoint}/{bucket}", auth)

    @property
    def pid(self) -> int:
        """The ``weed`` process id."""
        if self._process is None:
            raise RuntimeError("weed is not running")
        return self._process.pid
