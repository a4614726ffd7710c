"""The ``callfs storage-node`` process: what a kill in the middle of an upload leaves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from callfs_storage_node.volume import SMALL_WRITE_BYTES
from grpc_health.v1 import health_pb2, health_pb2_grpc

from callfs.storage.v1 import storage_pb2, storage_pb2_grpc
from tests.storage_node.conftest import METADATA, SECRET
from tests.support.polling import wait_until

CALLFS = Path(sys.executable).parent / "callfs"
START_TIMEOUT = 30.0
# From binding its port to serving, the restarted node has only its volume to sweep.
SERVE_TIMEOUT = 5.0
_PORT = re.compile(r"on port (\d+)")


class NodeProcess:
    """``callfs storage-node`` over one volume on a port of its choosing, logging to a file."""

    def __init__(self, volume: Path, log: Path) -> None:
        self.volume = volume
        self.log = log
        variables = {
            "CALLFS_AUTH_INTERNAL_PROXY_SECRET": SECRET,
            "CALLFS_BACKEND_LOCALFS_ROOT_PATH": str(volume),
            "CALLFS_STORAGE_NODE_LISTEN_ADDR": "127.0.0.1:0",
            "CALLFS_INSTANCE_DISCOVERY_INSTANCE_ID": "node-0",
            "CALLFS_LOG_FORMAT": "console",
            "CALLFS_LOG_LEVEL": "info",
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
