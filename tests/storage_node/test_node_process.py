"""The ``callfs storage-node`` process: what a kill in the middle of an upload leaves, and
its metrics listener."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from callfs_storage_node.volume import SMALL_WRITE_BYTES
from grpc_health.v1 import health_pb2, health_pb2_grpc

from callfs.storage.v1 import storage_pb2, storage_pb2_grpc
from tests.storage_node.conftest import METADATA, SECRET
from tests.storage_node.test_metrics import SERVICE, read, samples, value, write
from tests.support.polling import wait_until
from tests.support.servers import free_port

CALLFS = Path(sys.executable).parent / "callfs"
START_TIMEOUT = 30.0
# From binding its port to serving, the restarted node has only its volume to sweep.
SERVE_TIMEOUT = 5.0
_PORT = re.compile(r"on port (\d+)")


class NodeProcess:
    """``callfs storage-node`` over one volume on a port of its choosing, logging to a file;
    its metrics listener on ``metrics_addr`` (default: any free port)."""

    def __init__(self, volume: Path, log: Path, **variables: str) -> None:
        self.volume = volume
        self.log = log
        variables = {
            "CALLFS_AUTH_INTERNAL_PROXY_SECRET": SECRET,
            "CALLFS_BACKEND_LOCALFS_ROOT_PATH": str(volume),
            "CALLFS_STORAGE_NODE_LISTEN_ADDR": "127.0.0.1:0",
            "CALLFS_METRICS_LISTEN_ADDR": "127.0.0.1:0",
            "CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID": "node-0",
            "CALLFS_LOG_FORMAT": "console",
            "CALLFS_LOG_LEVEL": "info",
            **variables,
        }
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [str(CALLFS), "storage-node"],
                env={**inherited, **variables},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def port(self) -> int | None:
        """The port the node bound, once its log says so."""
        found = _PORT.search(self.log.read_text(errors="replace"))
        return int(found.group(1)) if found else None

    async def address(self) -> str:
        await wait_until(
            lambda: self.port() is not None or self.process.poll() is not None,
            timeout=START_TIMEOUT,
            what="the storage node bound its port",
        )
        assert self.process.poll() is None, self.log.read_text(errors="replace")
        return f"127.0.0.1:{self.port()}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def temp_files(self) -> list[Path]:
        return list(self.volume.rglob(".callfs-tmp-*"))


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    """The node processes a test starts, each killed at its end."""
    started: list[NodeProcess] = []
    yield started
    for node in started:
        node.kill()


async def test_a_node_killed_mid_upload_removes_the_temp_file_when_it_starts_again(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    volume = tmp_path / "volume"
    nodes.append(NodeProcess(volume, tmp_path / "first.log"))
    first = nodes[0]
    async with grpc.aio.insecure_channel(await first.address()) as channel:
        stub = storage_pb2_grpc.StorageNodeStub(channel)
        call = stub.Write(metadata=METADATA, wait_for_ready=True)
        await call.write(
            storage_pb2.WriteRequest(
                header=storage_pb2.WriteHeader(path="ab/object", create_parents=True)
            )
        )
        # Past the bound of a small write, which would be held in memory, not on disk.
        await call.write(storage_pb2.WriteRequest(chunk=b"x" * (SMALL_WRITE_BYTES + 1)))
        await wait_until(
            lambda: bool(first.temp_files()), timeout=START_TIMEOUT, what="the upload began"
        )
        first.kill()
        call.cancel()
    (temp,) = first.temp_files()

    nodes.append(NodeProcess(volume, tmp_path / "second.log"))
    second = nodes[1]
    async with grpc.aio.insecure_channel(await second.address()) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(
            health_pb2.HealthCheckRequest(), timeout=SERVE_TIMEOUT, wait_for_ready=True
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    # Removed before the node serves, while nothing can be writing it.
    assert not temp.exists()
    assert second.temp_files() == []
    assert not (volume / "ab" / "object").exists()


async def test_the_node_process_serves_its_metrics_on_the_metrics_address(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    metrics = f"http://127.0.0.1:{free_port()}"
    nodes.append(
        NodeProcess(
            tmp_path / "volume",
            tmp_path / "node.log",
            CALLFS_METRICS_LISTEN_ADDR=metrics.removeprefix("http://"),
        )
    )
    node = nodes[0]
    body = b"metered" * 1000
    async with grpc.aio.insecure_channel(await node.address()) as channel:
        stub = storage_pb2_grpc.StorageNodeStub(channel)
        await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=SERVE_TIMEOUT, wait_for_ready=True
        )
        await write(stub, "ab/object", body)
        assert await read(stub, "ab/object") == body
    async with httpx.AsyncClient(base_url=metrics, timeout=30) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        scraped = await client.get("/metrics")
        openmetrics = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text"}
        )
    assert scraped.status_code == 200
    found = samples(scraped.text)
    rpcs = "callfs_storage_node_rpcs_total"
    assert value(found, rpcs, service=SERVICE, method="Write", code="OK") == 1
    assert value(found, rpcs, service=SERVICE, method="Read", code="OK") == 1
    assert value(found, "callfs_storage_node_written_bytes_total") == len(body)
    assert value(found, "callfs_storage_node_read_bytes_total") == len(body)
    assert value(found, "callfs_storage_node_fsync_duration_seconds_count", kind="file") > 0
    assert value(found, "callfs_storage_node_volume_objects") == 1
    assert value(found, "callfs_storage_node_volume_capacity_bytes") > 0
    assert value(found, "process_cpu_seconds_total") > 0
    assert any(name.startswith("python_gc_") for name, _ in found)
    assert "_created" not in scraped.text
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")

    # SIGTERM stops the gRPC server and the metrics listener, cleanly.
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(timeout=30) == 0, node.log.read_text(errors="replace")
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{metrics}/health")


async def test_a_node_with_metrics_disabled_serves_no_metrics_listener(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    port = free_port()
    nodes.append(
        NodeProcess(
            tmp_path / "volume",
            tmp_path / "node.log",
            CALLFS_METRICS_LISTEN_ADDR=f"127.0.0.1:{port}",
            CALLFS_METRICS_ENABLED="false",
        )
    )
    async with grpc.aio.insecure_channel(await nodes[0].address()) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(
            health_pb2.HealthCheckRequest(), timeout=SERVE_TIMEOUT, wait_for_ready=True
        )
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/metrics")
