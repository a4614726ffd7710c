"""A local multi-process CallFS cluster on loopback, for people, ``tests/e2e`` and ``make bench``.

PostgreSQL, Redis, three storage nodes, two gateways, a link-service and nginx (the
ingress: two front doors that route like the chart's Ingress) each run as a separate OS
process in a process group of its own, detached from the caller. Data, logs, pid files
and ``cluster.env`` live under one directory::

    .venv/bin/python -m tools.cluster up|down|status [--dir .callfs-cluster]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from callfs.settings import ENV_NAMES

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".callfs-cluster"
NODES = ("storage-node-0", "storage-node-1", "storage-node-2")
GATEWAYS = ("gateway-1", "gateway-2")
LINK_SERVICE = "link-service"
PEERS_FILE = "peers.json"
API_KEY_COUNT = 3
START_TIMEOUT = 90.0
# Ports are picked free just before the processes start: another program may take one
# meanwhile (a parallel test run), and the cluster then starts again on fresh ports.
START_ATTEMPTS = 3
STOP_TIMEOUT = 15.0
POLL = 0.1

# Stop order: the watchdog, the ingress, the web roles, the storage nodes, the databases.
PHASE_WATCHDOG, PHASE_INGRESS, PHASE_WEB, PHASE_NODES, PHASE_DATA = range(5)

# What the cluster decides for every role; the caller's CALLFS_* values for these are ignored.
OWNED = {
    ("server", "listen_addr"),
    ("server", "protocol"),
    ("metrics", "listen_addr"),
    ("metrics", "enabled"),
    ("storage_node", "listen_addr"),
    ("backend", "localfs_root_path"),
    ("instance_discovery", "mode"),
    ("instance_discovery", "instance_id"),
    ("instance_discovery", "peer_endpoints"),
    ("instance_discovery", "peers_file"),
    ("instance_discovery", "peers_file_interval"),
    ("metadata_store", "type"),
    ("metadata_store", "dsn"),
    ("dlm", "type"),
    ("dlm", "redis_addr"),
    ("dlm", "redis_password"),
    ("dlm", "redis_db"),
}

# Started by the launcher in a fresh session, so the real process is nobody's child here
# (no zombies, no unreaped Popen objects in the caller) and its pid is its process group.
_LAUNCHER = """
import json, subprocess, sys
spec = json.load(sys.stdin)
with open(spec["log"], "ab") as log:
    child = subprocess.Popen(
        spec["argv"], env=spec["env"], cwd=spec["cwd"], stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, user=spec["user"],
    )
sys.stdout.write(str(child.pid))
"""


class ClusterError(RuntimeError):
    """The local cluster cannot be started, found or stopped."""


class StartError(ClusterError):
    """A process of the cluster did not come up; the message carries its log's tail."""

    def __init__(self, message: str, *, port_conflict: bool = False) -> None:
        super().__init__(message)
        self.port_conflict = port_conflict


@dataclass
class Component:
    """One process of the cluster: how to launch it, probe it and stop it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str
    checks: list[str]
    phase: int
    stop_signal: int = signal.SIGTERM
    user: str | None = None


@dataclass
class PidRecord:
    """A running process as its pid file describes it (start time guards against pid reuse)."""

    name: str
    pid: int
    start: int
    stop_signal: int
    phase: int

    def running(self) -> bool:
        return _start_time(self.pid) == self.start


@dataclass
class Cluster:
    """A handle on a running local cluster: its URLs, keys and processes."""

    root: Path
    url: str
    url2: str
    metrics: str
    api_keys: list[str]
    nodes: list[str]
    components: dict[str, Component] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """What ``cluster.env`` holds: the variables tests/e2e reads."""
        return {
            "CALLFS_URL": self.url,
            "CALLFS_URL2": self.url2,
            "CALLFS_METRICS": self.metrics,
            "CALLFS_API_KEYS": ",".join(self.api_keys),
            "CALLFS_CLUSTER_DIR": str(self.root),
            "CALLFS_CLUSTER_NODES": ",".join(self.nodes),
        }

    def running(self, name: str) -> bool:
        """Whether process ``name`` is alive now."""
        record = _read_pid(self.root, name)
        return record is not None and record.running()

    def kill(self, name: str) -> None:
        """SIGKILL process ``name`` and its process group, and wait until it is gone."""
        record = _read_pid(self.root, name)
        if record is None or not record.running():
            raise ClusterError(f"{name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGKILL)
        if not _wait_gone([record], STOP_TIMEOUT):
            raise ClusterError(f"{name} (pid {record.pid}) survived SIGKILL")
        _pid_file(self.root, name).unlink(missing_ok=True)

    def restart(self, name: str) -> None:
        """Start process ``name`` again as before (same ports, volume, settings); wait for it."""
        if self.running(name):
            raise ClusterError(f"{name} is still running")
        component = self.components[name]
        launch(self.root, component)
        wait_healthy(self.root, [component], START_TIMEOUT)

    def kill_node(self, name: str) -> None:
        """SIGKILL storage node ``name`` (its files become unavailable)."""
        self._check_node(name)
        self.kill(name)

    def restart_node(self, name: str) -> None:
        """Start storage node ``name`` again over its volume and port; wait until it serves."""
        self._check_node(name)
        self.restart(name)

    def down(self) -> None:
        """Stop every process of this cluster."""
        down(self.root)

    def add_node(self, name: str) -> None:
        """Start one more storage node over a fresh volume, then name it in the peers file:
        the running gateways see it join within ``peers_file_interval``.
        """
        if name in self.components:
            raise ClusterError(f"{name} is already part of this cluster")
        grpc_port, metrics_port = free_ports(2)
        model = self.components[self.nodes[0]]
        node = _node_component(self.root, model.env, name, grpc_port, metrics_port)
        launch(self.root, node)
        wait_healthy(self.root, [node], START_TIMEOUT)
        self.nodes.append(name)
        self.components[name] = node
        self.save()
        _write_peers(self.root, {**_read_peers(self.root), name: f"127.0.0.1:{grpc_port}"})

    def save(self) -> None:
        """Write ``cluster.json``, from which :func:`load` rebuilds this handle."""
        state = {
            "url": self.url,
            "url2": self.url2,
            "metrics": self.metrics,
            "api_keys": self.api_keys,
            "nodes": self.nodes,
            "components": [asdict(c) for c in self.components.values()],
        }
        _write_private(self.root / "cluster.json", json.dumps(state, indent=2))

    def _check_node(self, name: str) -> None:
        if name not in self.nodes:
            raise ClusterError(f"{name} is not a storage node of this cluster ({self.nodes})")


# Up


def up(
    root: Path = DEFAULT_DIR,
    environ: Mapping[str, str] | None = None,
    *,
    watch_pid: int | None = None,
) -> Cluster:
    """Start a fresh cluster under ``root`` and return once every process is healthy.

    ``environ`` (default: this process's) supplies ``CALLFS_*`` settings for every role;
    missing API keys and secrets are generated. With ``watch_pid`` a watchdog stops the
    cluster when that process dies.

    Raises:
        ClusterError: a cluster already runs there, or a process did not come up (every
            process started so far is stopped again).
    """
    environ = dict(os.environ if environ is None else environ)
    root = root.resolve()
    for attempt in range(1, START_ATTEMPTS + 1):
        prepare(root)
        try:
            return _start(root, environ, watch_pid)
        except BaseException as exc:
            down(root)
            if isinstance(exc, StartError) and exc.port_conflict and attempt < START_ATTEMPTS:
                logger.warning("a port was taken meanwhile; starting again on fresh ports")
                continue
            raise
    raise AssertionError("unreachable")


def load(root: Path = DEFAULT_DIR) -> Cluster:
    """The handle of the cluster ``up`` started under ``root``.

    Raises:
        ClusterError: no cluster was started there.
    """
    root = root.resolve()
    try:
        state = json.loads((root / "cluster.json").read_text())
    except FileNotFoundError:
        raise ClusterError(f"no local cluster in {root} (start one: make cluster-up)") from None
    return Cluster(
        root=root,
        url=state["url"],
        url2=state["url2"],
        metrics=state["metrics"],
        api_keys=state["api_keys"],
        nodes=state["nodes"],
        components={c["name"]: Component(**c) for c in state["components"]},
    )


def prepare(root: Path) -> None:
    """Refuse a running cluster; otherwise clear what a previous one left."""
    alive = [r.name for r in _pid_records(root) if r.running()]
    if alive:
        raise ClusterError(
            f"a cluster is already running in {root} ({', '.join(alive)}); "
            "stop it first (make cluster-down)"
        )
    for name in ("run", "logs", "postgres", "redis", "volumes", "nginx"):
        shutil.rmtree(root / name, ignore_errors=True)
    for name in ("cluster.env", "cluster.json", PEERS_FILE):
        (root / name).unlink(missing_ok=True)
    for name in ("run", "logs", "redis", "volumes", "nginx"):
        (root / name).mkdir(parents=True)
    if os.geteuid() == 0:
        # PostgreSQL runs as an unprivileged user that must reach its data directory.
        root.chmod(0o755)


def _start(root: Path, environ: dict[str, str], watch_pid: int | None) -> Cluster:
    ports = free_ports(16)
    pg_port, redis_port = next(ports), next(ports)
    door1, door2 = next(ports), next(ports)
    node_ports = {name: (next(ports), next(ports)) for name in NODES}
    web_ports = {name: (next(ports), next(ports)) for name in (*GATEWAYS, LINK_SERVICE)}
    url, url2 = f"http://127.0.0.1:{door1}", f"http://127.0.0.1:{door2}"

    if watch_pid is not None:
        launch(root, watchdog_component(root, watch_pid))

    redis = _redis(root, redis_port)
    launch(root, redis)

    env, api_keys = role_environment(environ, url)
    env |= {
        "CALLFS_SERVER_PROTOCOL": "http",
        "CALLFS_METRICS_ENABLED": "true",
        "CALLFS_INSTANCE_DISCOVERY_MODE": "static",
        # Every role reads the nodes from one file, so a node can join (Cluster.add_node).
        "CALLFS_INSTANCE_DISCOVERY_PEERS_FILE": str(root / PEERS_FILE),
        "CALLFS_INSTANCE_DISCOVERY_PEERS_FILE_INTERVAL": "0.5s",
        "CALLFS_METADATA_STORE_TYPE": "postgres",
        "CALLFS_METADATA_STORE_DSN": f"postgres://callfs@127.0.0.1:{pg_port}/callfs?sslmode=disable",
        "CALLFS_DLM_TYPE": "redis",
        "CALLFS_DLM_REDIS_ADDR": f"127.0.0.1:{redis_port}",
        "CALLFS_DLM_REDIS_PASSWORD": "",
        "CALLFS_DLM_REDIS_DB": "0",
    }
    callfs = _callfs_binary()

    _write_peers(root, {name: f"127.0.0.1:{grpc}" for name, (grpc, _) in node_ports.items()})
    nodes = [
        _node_component(root, env, name, grpc_port, metrics_port)
        for name, (grpc_port, metrics_port) in node_ports.items()
    ]
    for node in nodes:
        launch(root, node)

    postgres = _postgres(root, pg_port)
    launch(root, postgres)
    wait_healthy(root, [postgres], START_TIMEOUT)
    _create_database(root, pg_port)

    web = []
    for name, (api_port, metrics_port) in web_ports.items():
        role = "link-service" if name == LINK_SERVICE else "gateway"
        web_env = env | {
            "CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID": name,
            "CALLFS_SERVER_LISTEN_ADDR": f"127.0.0.1:{api_port}",
            "CALLFS_METRICS_LISTEN_ADDR": f"127.0.0.1:{metrics_port}",
            "CALLFS_BACKEND_LOCALFS_ROOT_PATH": str(root / "volumes"),
        }
        web.append(
            _component(
                root,
                name,
                [callfs, role],
                web_env,
                [f"http://127.0.0.1:{api_port}/ready"],
                PHASE_WEB,
            )
        )
    for component in web:
        launch(root, component)
    wait_healthy(root, [redis, *nodes, *web], START_TIMEOUT)

    ingress = nginx_component(
        root,
        doors={door1: web_ports[GATEWAYS[0]][0], door2: web_ports[GATEWAYS[1]][0]},
        link_service=web_ports[LINK_SERVICE][0],
    )
    launch(root, ingress)
    wait_healthy(root, [ingress], START_TIMEOUT)

    components = [redis, *nodes, postgres, *web, ingress]
    cluster = Cluster(
        root=root,
        url=url,
        url2=url2,
        metrics=f"http://127.0.0.1:{web_ports[GATEWAYS[0]][1]}",
        api_keys=api_keys,
        nodes=list(NODES),
        components={c.name: c for c in components},
    )
    cluster.save()
    _write_private(
        root / "cluster.env",
        f"# The local CallFS cluster; load it with: set -a; . {root}/cluster.env; set +a\n"
        + "".join(f"{key}={shlex.quote(value)}\n" for key, value in cluster.env().items()),
    )
    return cluster


def _node_component(
    root: Path, env: dict[str, str], name: str, grpc_port: int, metrics_port: int
) -> Component:
    volume = root / "volumes" / name
    volume.mkdir(parents=True)
    node_env = env | {
        "CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID": name,
        "CALLFS_STORAGE_NODE_LISTEN_ADDR": f"127.0.0.1:{grpc_port}",
        "CALLFS_BACKEND_LOCALFS_ROOT_PATH": str(volume),
        "CALLFS_METRICS_LISTEN_ADDR": f"127.0.0.1:{metrics_port}",
        "CALLFS_SERVER_LISTEN_ADDR": "127.0.0.1:0",
    }
    checks = [f"grpc://127.0.0.1:{grpc_port}"]
    return _component(root, name, [_callfs_binary(), "storage-node"], node_env, checks, PHASE_NODES)


def _read_peers(root: Path) -> dict[str, str]:
    peers: dict[str, str] = json.loads((root / PEERS_FILE).read_text())
    return peers


def _write_peers(root: Path, peers: Mapping[str, str]) -> None:
    """Replace the peers file whole (a rename), as the roles polling it expect."""
    staged = root / f"{PEERS_FILE}.new"
    staged.write_text(json.dumps(peers, indent=2) + "\n")
    os.replace(staged, root / PEERS_FILE)


def role_environment(environ: dict[str, str], url: str) -> tuple[dict[str, str], list[str]]:
    """The caller's environment for every role: its CALLFS_* settings win over our defaults,
    except the ones the cluster owns; missing keys and secrets are generated.
    """
    given = {ENV_NAMES[name]: value for name, value in environ.items() if name in ENV_NAMES}
    env = {
        name: value
        for name, value in environ.items()
        if name not in ENV_NAMES or ENV_NAMES[name] not in OWNED
    }
    defaults = {
        ("server", "external_url"): url,
        ("server", "trusted_proxies"): "127.0.0.1",
        ("storage_node", "grace_period"): "2s",
        ("replication", "factor"): "2",
        ("replication", "repair_interval"): "3s",
        ("log", "format"): "console",
        ("auth", "internal_proxy_secret"): secrets.token_urlsafe(32),
        ("auth", "single_use_link_secret"): secrets.token_urlsafe(32),
        ("auth", "api_keys"): ",".join(secrets.token_urlsafe(24) for _ in range(API_KEY_COUNT)),
    }
    for (section, field_name), value in defaults.items():
        if (section, field_name) not in given:
            env[f"CALLFS_{section.upper()}_{field_name.upper()}"] = value
            given[(section, field_name)] = value
    return env, _split_keys(given[("auth", "api_keys")])


def _split_keys(value: str) -> list[str]:
    text = value.strip()
    if text.startswith("["):
        return [str(key) for key in json.loads(text)]
    return [key.strip() for key in text.split(",") if key.strip()]


def _component(
    root: Path,
    name: str,
    argv: list[str],
    env: dict[str, str],
    checks: list[str],
    phase: int,
    *,
    stop_signal: int = signal.SIGTERM,
    user: str | None = None,
    cwd: Path | None = None,
) -> Component:
    return Component(
        name=name,
        argv=argv,
        env=env,
        cwd=str(cwd or root),
        log=str(root / "logs" / f"{name}.log"),
        checks=checks,
        phase=phase,
        stop_signal=int(stop_signal),
        user=user,
    )


def watchdog_component(root: Path, pid: int) -> Component:
    """A process that stops the cluster under ``root`` once process ``pid`` is gone."""
    argv = [sys.executable, "-m", "tools.cluster", "watch", "--dir", str(root), "--pid"]
    return _component(
        root, "watchdog", [*argv, str(pid)], dict(os.environ), [], PHASE_WATCHDOG, cwd=REPO
    )


# PostgreSQL and Redis


def _postgres_bin(program: str) -> str:
    found = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{program}"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return str(found[-1])
    path = shutil.which(program)
    if path is None:
        raise ClusterError(f"PostgreSQL's {program} is not installed (run: make system-deps)")
    return path


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: then it runs as ``postgres`` (or ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ClusterError("running as root, but there is no postgres or nobody user for PostgreSQL")


def _postgres(root: Path, port: int) -> Component:
    user = _postgres_user()
    home = root / "postgres"
    home.mkdir()
    if user is not None:
        account = pwd.getpwnam(user)
        os.chown(home, account.pw_uid, account.pw_gid)
    data = home / "data"
    log = root / "logs" / "postgres.log"
    with log.open("ab") as out:
        initdb = subprocess.run(
            [
                _postgres_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "callfs",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            user=user,
            cwd=home,
            check=False,
        )
    if initdb.returncode != 0:
        raise StartError(f"initdb failed:\n{_tail(log)}")
    argv = [_postgres_bin("postgres"), "-D", str(data), "-p", str(port)]
    for setting in (
        "listen_addresses=127.0.0.1",
        "unix_socket_directories=",
        "max_connections=200",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
    ):
        argv += ["-c", setting]
    return _component(
        root,
        "postgres",
        argv,
        _plain_env(),
        [f"postgres://127.0.0.1:{port}"],
        PHASE_DATA,
        stop_signal=signal.SIGINT,  # fast shutdown: SIGTERM would wait for every client
        user=user,
        cwd=home,
    )


def _create_database(root: Path, port: int) -> None:
    log = root / "logs" / "postgres.log"
    createdb = _postgres_bin("createdb")
    with log.open("ab") as out:
        created = subprocess.run(
            [createdb, "--host=127.0.0.1", f"--port={port}", "--username=callfs", "callfs"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_plain_env(),
            check=False,
        )
    if created.returncode != 0:
        raise StartError(f"createdb failed:\n{_tail(log)}")


def _redis(root: Path, port: int) -> Component:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ClusterError("redis-server is not installed (run: make system-deps)")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root / "redis")]
    argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no", "--logfile", ""]
    return _component(root, "redis", argv, _plain_env(), [f"redis://127.0.0.1:{port}"], PHASE_DATA)


def _plain_env() -> dict[str, str]:
    """The environment of the third-party processes: no CALLFS_* settings, no secrets."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}


# nginx, the ingress


def nginx_config(root: Path, doors: Mapping[int, int], link_service: int) -> str:
    """nginx routing like the chart's Ingress: links to the link-service, the rest to a gateway.

    ``doors`` maps each front-door port to the port of the gateway behind it.
    """
    temp = root / "nginx" / "temp"
    upstreams = [f"upstream link_service {{ server 127.0.0.1:{link_service}; keepalive 16; }}"]
    servers = []
    for index, (door, gateway) in enumerate(doors.items(), start=1):
        upstreams.append(
            f"upstream gateway_{index} {{ server 127.0.0.1:{gateway}; keepalive 16; }}"
        )
        servers.append(
            f"""
  server {{
    listen 127.0.0.1:{door};
    location /download/ {{ proxy_pass http://link_service; }}
    location = /download {{ proxy_pass http://link_service; }}
    location /v1/links/ {{ proxy_pass http://link_service; }}
    location = /v1/links {{ proxy_pass http://link_service; }}
    location / {{ proxy_pass http://gateway_{index}; }}
  }}"""
        )
    return f"""# The ingress of the local CallFS cluster (written by tools/cluster.py).
daemon off;
worker_processes 1;
pid {root / "nginx" / "nginx.pid"};
error_log stderr notice;
events {{ worker_connections 1024; }}
http {{
  access_log {root / "logs" / "nginx-access.log"};
  client_body_temp_path {temp / "body"};
  proxy_temp_path {temp / "proxy"};
  fastcgi_temp_path {temp / "fastcgi"};
  uwsgi_temp_path {temp / "uwsgi"};
  scgi_temp_path {temp / "scgi"};

  # Stream both ways, like the chart's ingress-nginx annotations: no body limit, no buffering.
  client_max_body_size 0;
  proxy_request_buffering off;
  proxy_buffering off;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $http_host;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto $scheme;
  proxy_connect_timeout 5s;
  proxy_read_timeout 600s;
  proxy_send_timeout 600s;

  {(chr(10) + "  ").join(upstreams)}
{"".join(servers)}
}}
"""


def nginx_component(root: Path, doors: Mapping[int, int], link_service: int) -> Component:
    """The ingress process; its config (see :func:`nginx_config`) is written under root/nginx."""
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        raise ClusterError("nginx is not installed (run: make system-deps)")
    (root / "nginx" / "temp").mkdir(parents=True, exist_ok=True)
    config = root / "nginx" / "nginx.conf"
    config.write_text(nginx_config(root, doors, link_service))
    argv = [binary, "-p", str(root / "nginx"), "-c", str(config)]
    argv += ["-e", "stderr"]
    checks = [f"http://127.0.0.1:{door}/health" for door in doors]
    return _component(root, "nginx", argv, _plain_env(), checks, PHASE_INGRESS)


# Processes


def _callfs_binary() -> str:
    beside = Path(sys.executable).parent / "callfs"
    if beside.exists():
        return str(beside)
    found = shutil.which("callfs")
    if found is None:
        raise ClusterError("the callfs command is not installed (run: make install)")
    return found


def _port_taken(log: str) -> bool:
    """Whether a process's log says it could not listen because its port was taken:
    nginx's "Address already in use", or a CallFS role's "<setting> <addr> is already
    in use"."""
    return "already in use" in log.lower()


def free_ports(count: int) -> Iterator[int]:
    """``count`` distinct loopback ports that nothing listens on right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        ports = [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return iter(ports)


def launch(root: Path, component: Component) -> PidRecord:
    """Start ``component`` detached in its own session and record its pid file."""
    spec = {
        "argv": component.argv,
        "env": component.env,
        "cwd": component.cwd,
        "log": component.log,
        "user": component.user,
    }
    launched = subprocess.run(
        [sys.executable, "-I", "-c", _LAUNCHER],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
    )
    if launched.returncode != 0 or not launched.stdout.strip().isdigit():
        raise StartError(f"cannot start {component.name}: {launched.stderr.strip()}")
    pid = int(launched.stdout)
    record = PidRecord(
        component.name, pid, _start_time(pid), component.stop_signal, component.phase
    )
    _pid_file(root, component.name).write_text(json.dumps(asdict(record)) + "\n")
    logger.info("started %s (pid %d)", component.name, pid)
    return record


def wait_healthy(root: Path, components: list[Component], timeout: float) -> None:
    """Wait until every component answers its probes.

    Raises:
        StartError: one exited or stayed unhealthy past ``timeout``; with its log's tail.
    """
    pending = list(components)
    deadline = time.monotonic() + timeout
    while pending:
        for component in list(pending):
            record = _read_pid(root, component.name)
            if record is None or not record.running():
                tail = _tail(Path(component.log))
                raise StartError(
                    f"{component.name} exited while starting; {component.log}:\n{tail}",
                    port_conflict=_port_taken(tail),
                )
            if all(_probe(check) for check in component.checks):
                logger.info("%s is healthy", component.name)
                pending.remove(component)
        if pending and time.monotonic() > deadline:
            names = ", ".join(c.name for c in pending)
            tails = "\n".join(f"--- {c.log}\n{_tail(Path(c.log))}" for c in pending)
            raise StartError(f"not healthy after {timeout:.0f}s: {names}\n{tails}")
        if pending:
            time.sleep(POLL)


def _probe(check: str) -> bool:
    """Whether the service behind ``check`` (a scheme://host:port[/path] URL) answers."""
    scheme, _, rest = check.partition("://")
    address = rest.split("/", 1)[0]
    host, _, port = address.rpartition(":")
    if scheme == "http":
        return _http_ok(check)
    if scheme == "grpc":
        return _grpc_serving(address)
    if scheme == "redis":
        return _redis_pong(host, int(port))
    if scheme == "postgres":
        ready = subprocess.run(
            [_postgres_bin("pg_isready"), "-q", "-h", host, "-p", port, "-t", "1"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return ready.returncode == 0
    raise ClusterError(f"unknown probe {check}")


def _http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except OSError:
        return False


def _grpc_serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _redis_pong(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


# Pid files


def _pid_file(root: Path, name: str) -> Path:
    return root / "run" / f"{name}.pid"


def _read_pid(root: Path, name: str) -> PidRecord | None:
    try:
        return PidRecord(**json.loads(_pid_file(root, name).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _pid_records(root: Path) -> list[PidRecord]:
    records = [_read_pid(root, p.stem) for p in sorted((root / "run").glob("*.pid"))]
    return [r for r in records if r is not None]


def _start_time(pid: int) -> int:
    """The start time of a live process (0 when it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return 0
    return int(fields[19])


def _wait_gone(records: list[PidRecord], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(r.running() for r in records):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# Down, status, watch


def down(root: Path = DEFAULT_DIR) -> None:
    """Stop every process started under ``root``: its stop signal, then SIGKILL to its group.

    Safe to run twice, and on a cluster that never fully started.
    """
    root = root.resolve()
    records = _pid_records(root)
    for phase in sorted({r.phase for r in records}):
        # The watchdog runs down() itself: it stops everything but itself.
        batch = [r for r in records if r.phase == phase and r.running() and r.pid != os.getpid()]
        for record in batch:
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, record.stop_signal)
        if not _wait_gone(batch, STOP_TIMEOUT):
            for record in batch:
                if record.running():
                    logger.warning("%s did not stop in time; SIGKILL", record.name)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(record.pid, signal.SIGKILL)
            _wait_gone(batch, STOP_TIMEOUT)
        for record in batch:
            # Whatever the leader left behind in its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)
            logger.info("stopped %s", record.name)
    for record in records:
        _pid_file(root, record.name).unlink(missing_ok=True)


def status(root: Path = DEFAULT_DIR) -> list[tuple[str, int, bool]]:
    """``(name, pid, running)`` for every process with a pid file under ``root``."""
    return [(r.name, r.pid, r.running()) for r in _pid_records(root.resolve())]


def watch(root: Path, pid: int) -> None:
    """Stop the cluster under ``root`` once process ``pid`` is gone."""
    while _start_time(pid):
        time.sleep(0.5)
    logger.warning("process %d is gone; stopping the cluster in %s", pid, root)
    down(root)


def _banner(cluster: Cluster) -> str:
    keys = "\n".join(
        f"    api-user-{index}: {key}" for index, key in enumerate(cluster.api_keys, start=1)
    )
    try:
        where = cluster.root.relative_to(Path.cwd())
    except ValueError:
        where = cluster.root
    key = cluster.api_keys[0] if cluster.api_keys else "<key>"
    return (
        f"\nCallFS local cluster is up ({where}).\n"
        f"  CALLFS_URL      {cluster.url}   (gateway-1; /download/ and /v1/links/: link-service)\n"
        f"  CALLFS_URL2     {cluster.url2}   (gateway-2)\n"
        f"  CALLFS_METRICS  {cluster.metrics}/metrics   (gateway-1's metrics listener)\n"
        f"  API keys:\n{keys}\n"
        f"  logs:           {where}/logs/\n"
        f"  environment:    set -a; . {where}/cluster.env; set +a\n\n"
        f'Try it:\n  curl -X POST -H "Authorization: Bearer {key}" --data-binary hello '
        f"{cluster.url}/v1/files/hello.txt\n\n"
        "Stop it with: make cluster-down\n"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.cluster up|down|status``."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.cluster", description="The local multi-process CallFS cluster."
    )
    parser.add_argument("command", choices=["up", "down", "status", "watch"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="default .callfs-cluster")
    parser.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="cluster: %(message)s", stream=sys.stderr)
    try:
        if args.command == "up":
            sys.stdout.write(_banner(up(args.dir)))
        elif args.command == "down":
            down(args.dir)
        elif args.command == "watch":
            watch(args.dir.resolve(), args.pid)
        else:
            rows = status(args.dir)
            for name, pid, running in rows:
                sys.stdout.write(f"{name:16} {pid:>8}  {'running' if running else 'stopped'}\n")
            if not rows:
                sys.stdout.write(f"no cluster in {args.dir}\n")
            return 0 if rows and all(running for _, _, running in rows) else 1
    except ClusterError as exc:
        sys.stderr.write(f"cluster: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
