"""Storage nodes for tests: real grpc.aio servers on port 0 over ``tmp_path``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from callfs_storage_node.server import build_server

from callfs.settings import Settings, load_settings
from callfs.storage.v1 import storage_pb2_grpc

SECRET = "storage-node-secret-for-tests-0123"
METADATA = (("x-callfs-internal-secret", SECRET),)


def node_settings(root: Path, **storage_node: Any) -> Settings:
    """Settings for one node over ``root``, with the test secret."""
    return load_settings(
        environ={},
        overrides={
            "auth": {"internal_proxy_secret": SECRET},
            "backend": {"localfs_root_path": str(root)},
            "storage_node": storage_node,
            "log": {"format": "console", "level": "warning"},
        },
    )


@dataclass
class RunningNode:
    """One started storage node: its volume, port and server."""

    root: Path
    port: int
    server: grpc.aio.Server

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def temp_files(self) -> list[Path]:
        return list(self.root.rglob(".callfs-tmp-*"))


async def start_node(root: Path, port: int = 0, **storage_node: Any) -> RunningNode:
    """Start a node over ``root`` on loopback ``port`` (0: any free one), known by the
    name of its volume folder (``tmp_path / "node-0"`` is ``node-0``).
    """
    settings = node_settings(root, **storage_node)
    server, bound = build_server(settings, listen=f"127.0.0.1:{port}", instance_id=root.name)
    await server.start()
    return RunningNode(Path(settings.backend.localfs_root_path), bound, server)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    """One running node over ``tmp_path/volume``."""
    running = await start_node(tmp_path / "volume")
    yield running
    await running.server.stop(0)


@pytest.fixture
async def channel(node: RunningNode) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to ``node``."""
    limit = 8 * 1024 * 1024
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    async with grpc.aio.insecure_channel(node.address, options=options) as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> storage_pb2_grpc.StorageNodeStub:
    """The StorageNode stub over ``channel`` (pass ``metadata=METADATA``)."""
    return storage_pb2_grpc.StorageNodeStub(channel)
