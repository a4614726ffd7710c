"""The local cluster's own machinery: the nginx ingress routes like the chart's Ingress and
streams, processes are started detached, killed, restarted and always stopped.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.target import chunks
from tools import cluster as local

SETTLE_TIMEOUT = 20.0


class Upstream(BaseHTTPRequestHandler):
    """Answers ``<server name> <method> <path> <body length>``, reading chunked bodies too."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(0)

    def do_POST(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            length = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                length += len(self.rfile.read(size))
                self.rfile.readline()
        else:
            length = len(self.rfile.read(int(self.headers.get("content-length", "0"))))
        self._answer(length)

    def _answer(self, length: int) -> None:
        name = self.server.server_name_tag  # type: ignore[attr-defined]
        body = f"{name} {self.command} {self.path} {length}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextmanager
def upstreams(*names: str) -> Iterator[dict[str, int]]:
    servers = []
    threads = []
    try:
        for name in names:
            server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
            server.server_name_tag = name  # type: ignore[attr-defined]
            servers.append(server)
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            threads.append(thread)
        yield {name: s.server_address[1] for name, s in zip(names, servers, strict=True)}
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A cluster folder; whatever was started in it is stopped afterwards."""
    for name in ("run", "logs"):
        (tmp_path / name).mkdir()
    yield tmp_path
    local.down(tmp_path)


def sleeper(root: Path, name: str = "sleeper") -> local.Component:
    return local.Component(
        name=name,
        argv=["sleep", "300"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=str(root),
        log=str(root / "logs" / f"{name}.log"),
        checks=[],
        phase=local.PHASE_NODES,
    )


def handle(root: Path, *components: local.Component) -> local.Cluster:
    return local.Cluster(
        root=root,
        url="",
        url2="",
        metrics="",
        api_keys=[],
        nodes=[c.name for c in components],
        components={c.name: c for c in components},
    )


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """nginx as the ingress: two front doors over two fake gateways and a fake link-service."""
    root = tmp_path_factory.mktemp("ingress")
    for name in ("run", "logs"):
        (root / name).mkdir()
    with upstreams("gateway-1", "gateway-2", "link-service") as ports:
        free = local.free_ports(2)
        door1, door2 = next(free), next(free)
        ingress = local.nginx_component(
            root,
            {door1: ports["gateway-1"], door2: ports["gateway-2"]},
            link_service=ports["link-service"],
        )
        try:
            local.launch(root, ingress)
            local.wait_healthy(root, [ingress], SETTLE_TIMEOUT)
            yield door1, door2
        finally:
            local.down(root)


@pytest.mark.parametrize(
    ("path", "door_1", "door_2"),
    [
        ("/health", "gateway-1", "gateway-2"),
        ("/v1/files/a/b.txt", "gateway-1", "gateway-2"),
        ("/v1/directories/", "gateway-1", "gateway-2"),
        ("/download/some-token", "link-service", "link-service"),
        ("/download", "link-service", "link-service"),
        ("/v1/links/generate", "link-service", "link-service"),
        ("/downloads/not-a-link", "gateway-1", "gateway-2"),
        ("/v1/linksx", "gateway-1", "gateway-2"),
    ],
)
def test_ingress_routes_like_the_charts_ingress(
    doors: tuple[int, int], path: str, door_1: str, door_2: str
) -> None:
    with httpx.Client(trust_env=False) as client:
        for door, expected in zip(doors, (door_1, door_2), strict=True):
            response = client.get(f"http://127.0.0.1:{door}{path}")
            assert response.status_code == 200
            assert response.text == f"{expected} GET {path} 0"


def test_ingress_streams_bodies_of_any_size(doors: tuple[int, int]) -> None:
    size = 20 * 1024 * 1024 + 7
    url = f"http://127.0.0.1:{doors[0]}/v1/files/big"
    with httpx.Client(trust_env=False, timeout=60) as client:
        streamed = client.post(url, content=chunks(size))
        whole = client.post(url, content=b"x" * size)
    # Beyond nginx's default 1 MiB limit, chunked or not: client_max_body_size 0.
    assert streamed.text == f"gateway-1 POST /v1/files/big {size}"
    assert whole.text == f"gateway-1 POST /v1/files/big {size}"


def test_killed_process_is_restarted_and_down_stops_it(root: Path) -> None:
    cluster = handle(root, sleeper(root))
    cluster.restart("sleeper")
    assert cluster.running("sleeper")
    first = local.status(root)

    cluster.kill("sleeper")
    assert not cluster.running("sleeper")
    assert local.status(root) == []

    cluster.restart("sleeper")
    assert cluster.running("sleeper")
    assert local.status(root)[0][1] != first[0][1]

    local.down(root)
    assert not cluster.running("sleeper")
    local.down(root)
    assert local.status(root) == []


def test_down_kills_a_process_that_ignores_its_stop_signal(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubborn = sleeper(root, "stubborn")
    stubborn.argv = ["sh", "-c", "trap '' TERM; sleep 300 & wait"]
    monkeypatch.setattr(local, "STOP_TIMEOUT", 0.5)
    cluster = handle(root, stubborn)
    cluster.restart("stubborn")
    local.down(root)
    assert not cluster.running("stubborn")


def test_up_refuses_while_a_cluster_runs_there(root: Path) -> None:
    handle(root, sleeper(root)).restart("sleeper")
    with pytest.raises(local.ClusterError, match="already running"):
        local.up(root, {})


def test_restart_of_a_running_process_is_refused(root: Path) -> None:
    cluster = handle(root, sleeper(root))
    cluster.restart("sleeper")
    with pytest.raises(local.ClusterError, match="still running"):
        cluster.restart("sleeper")


def test_kill_node_refuses_a_name_that_is_no_node(root: Path) -> None:
    cluster = handle(root, sleeper(root))
    with pytest.raises(local.ClusterError, match="not a storage node"):
        cluster.kill_node("gateway-1")


def test_watchdog_stops_the_cluster_when_its_owner_dies(root: Path) -> None:
    owner = subprocess.Popen(["sleep", "300"])
    try:
        cluster = handle(root, sleeper(root))
        cluster.restart("sleeper")
        watchdog = local.watchdog_component(root, owner.pid)
        local.launch(root, watchdog)
        assert cluster.running("sleeper")
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + SETTLE_TIMEOUT
    # Polling: the watchdog is another process.
    while (cluster.running("sleeper") or cluster.running("watchdog")) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not cluster.running("sleeper")
    assert not cluster.running("watchdog")


def test_caller_settings_reach_the_roles_except_the_clusters_own() -> None:
    environ = {
        "PATH": "/usr/bin",
        "CALLFS_LOG_LEVEL": "debug",
        "CALLFS_SERVER_LISTEN_ADDR": "0.0.0.0:1",
        "CALLFS_METADATA_STORE__DSN": "postgres://elsewhere/db",
        "CALLFS_AUTH_API_KEYS": "first-key-0123456789,second-key-0123456789",
        "CALLFS_SERVER_EXTERNAL_URL": "https://files.example.com",
    }
    env, keys = local.role_environment(environ, "http://127.0.0.1:1234")
    assert keys == ["first-key-0123456789", "second-key-0123456789"]
    assert env["CALLFS_LOG_LEVEL"] == "debug"
    assert env["CALLFS_SERVER_EXTERNAL_URL"] == "https://files.example.com"
    assert "CALLFS_SERVER_LISTEN_ADDR" not in env
    assert "CALLFS_METADATA_STORE__DSN" not in env
    assert env["PATH"] == "/usr/bin"


def test_missing_keys_and_secrets_are_generated() -> None:
    env, keys = local.role_environment({}, "http://127.0.0.1:1234")
    assert len(keys) == local.API_KEY_COUNT
    assert len(set(keys)) == len(keys)
    assert env["CALLFS_AUTH_API_KEYS"] == ",".join(keys)
    for name in ("CALLFS_AUTH_INTERNAL_PROXY_SECRET", "CALLFS_AUTH_SINGLE_USE_LINK_SECRET"):
        assert len(env[name]) >= 16
    assert env["CALLFS_SERVER_EXTERNAL_URL"] == "http://127.0.0.1:1234"


def test_load_without_a_cluster_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(local.ClusterError, match=str(tmp_path)):
        local.load(tmp_path)


def test_a_taken_port_is_reported_as_a_port_conflict(root: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ingress = local.nginx_component(
            root, {taken.getsockname()[1]: next(local.free_ports(1))}, link_service=1
        )
        local.launch(root, ingress)
        with pytest.raises(local.StartError, match="nginx exited") as raised:
            local.wait_healthy(root, [ingress], SETTLE_TIMEOUT)
    assert raised.value.port_conflict


def test_a_role_whose_port_is_taken_is_reported_as_a_port_conflict(root: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        grpc_port = next(local.free_ports(1))
        env = {"CALLFS_AUTH_INTERNAL_PROXY_SECRET": "a-secret-of-twenty-chars"}
        node = local._node_component(root, env, "node-x", grpc_port, taken.getsockname()[1])
        local.launch(root, node)
        with pytest.raises(local.StartError, match="is already in use") as raised:
            local.wait_healthy(root, [node], SETTLE_TIMEOUT)
    assert raised.value.port_conflict
