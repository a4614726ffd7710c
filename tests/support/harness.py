"""A whole gateway in the test process: real storage nodes over gRPC, a real metadata
store, real uvicorn on a loopback port, and httpx clients for several users.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import uvicorn
from callfs_gateway.app import create_app
from callfs_storage_node.server import build_server
from fastapi import FastAPI

from callfs.discovery import build_discovery
from callfs.runtime import Runtime, open_runtime
from callfs.serving import api_server, bound_port
from callfs.settings import Settings, load_settings

INTERNAL_SECRET = "internal-secret-for-tests-0123456789"
LINK_SECRET = "link-secret-for-tests-0123456789abcdef"

# name -> (api key, groups)
USERS: dict[str, tuple[str, list[str]]] = {
    "root": ("key-root-0123456789abcdef", []),
    "alice": ("key-alice-0123456789abcdef", ["staff"]),
    "bob": ("key-bob-0123456789abcdef", ["staff"]),
    "carol": ("key-carol-0123456789abcdef", []),
}


def make_settings(tmp_path: Path, store: str, dsn: str | None, **sections: Any) -> Settings:
    """Settings for one test: users above, fast timeouts, the chosen metadata store."""
    overrides: dict[str, Any] = {
        "server": {"listen_addr": "127.0.0.1:0", "protocol": "http", "file_op_timeout": "5s"},
        "metrics": {"listen_addr": "127.0.0.1:0"},
        "auth": {
            "internal_proxy_secret": INTERNAL_SECRET,
            "single_use_link_secret": [LINK_SECRET],
            "users": [
                {"name": name, "api_key": key, "groups": groups}
                for name, (key, groups) in USERS.items()
            ],
        },
        "metadata_store": (
            {"type": "sqlite", "sqlite_path": str(tmp_path / "metadata.sqlite3")}
            if store == "sqlite"
            else {"type": "postgres", "dsn": dsn}
        ),
        "dlm": {"type": "local", "lock_wait_timeout": "10s"},
        "backend": {"localfs_root_path": str(tmp_path / "volumes")},
        "log": {"format": "console", "level": "warning"},
    }
    for section, values in sections.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    return load_settings(environ={}, overrides=overrides)


@dataclass
class Node:
    """One storage node: its gRPC server, port and volume."""

    name: str
    root: Path
    port: int
    server: grpc.aio.Server

    async def stop(self) -> None:
        await self.server.stop(0)


@dataclass
class Gateway:
    """One running gateway replica."""

    app: FastAPI
    runtime: Runtime
    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def client(self, user: str = "alice") -> httpx.AsyncClient:
        """An HTTP client authenticated as ``user`` (``anonymous``: no header)."""
        if user not in self.clients:
            headers = {} if user == "anonymous" else {"Authorization": f"Bearer {USERS[user][0]}"}
            self.clients[user] = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)
        return self.clients[user]

    async def stop(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.server.should_exit = True
        await self.task
        await self.runtime.close()


async def start_node(settings: Settings, name: str, root: Path, port: int = 0) -> Node:
    """Start a storage node on ``port`` (0: any) over ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    server, bound = build_server(settings, root=root, listen=f"127.0.0.1:{port}", instance_id=name)
    await server.start()
    return Node(name, root, bound, server)


async def start_gateway(
    settings: Settings,
    endpoints: dict[str, str],
    extend: Any = None,
) -> Gateway:
    """Open a runtime over ``endpoints`` (with the settings' ``peer_domains``) and serve the
    gateway app on a free port.
    """
    peers = settings.instance_discovery.model_copy(update={"peer_endpoints": endpoints})
    runtime = await open_runtime(settings, discovery=build_discovery(peers))
    app = create_app(settings, runtime)
    if extend is not None:
        extend(app, settings, runtime)
    server = api_server(app, settings)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await runtime.close()
            task.result()
        await asyncio.sleep(0.01)
    return Gateway(app, runtime, server, task, f"http://127.0.0.1:{bound_port(server)}")


@dataclass
class Cluster:
    """Storage nodes plus one or more gateway replicas sharing one metadata store."""

    settings: Settings
    nodes: dict[str, Node]
    gateways: list[Gateway]

    @property
    def gateway(self) -> Gateway:
        return self.gateways[0]

    def client(self, user: str = "alice", replica: int = 0) -> httpx.AsyncClient:
        return self.gateways[replica].client(user)

    def endpoints(self) -> dict[str, str]:
        return {name: f"127.0.0.1:{node.port}" for name, node in self.nodes.items()}

    async def stop_node(self, name: str) -> None:
        await self.nodes[name].stop()

    async def restart_node(self, name: str) -> None:
        node = self.nodes[name]
        self.nodes[name] = await start_node(self.settings, name, node.root, node.port)

    def temp_files(self) -> list[Path]:
        """Every temp file left in any volume (there should be none)."""
        return [p for node in self.nodes.values() for p in node.root.rglob(".callfs-tmp-*")]

    def stored_objects(self) -> list[Path]:
        """Every stored object file across the volumes (not their checksum sidecars)."""
        return [
            p
            for node in self.nodes.values()
            for p in node.root.rglob("*")
            if p.is_file() and not p.name.startswith(".callfs-tmp-") and p.suffix != ".sums"
        ]


@contextlib.asynccontextmanager
async def running_cluster(
    settings: Settings, *, nodes: int = 2, replicas: int = 1, extend: Any = None
) -> AsyncIterator[Cluster]:
    """Start ``nodes`` storage nodes and ``replicas`` gateways; stop them all after."""
    volumes = Path(settings.backend.localfs_root_path)
    started: dict[str, Node] = {}
    gateways: list[Gateway] = []
    try:
        for index in range(nodes):
            name = f"node-{index}"
            started[name] = await start_node(settings, name, volumes / name)
        endpoints = {name: f"127.0.0.1:{node.port}" for name, node in started.items()}
        for _ in range(replicas):
            gateways.append(await start_gateway(settings, endpoints, extend))
        yield Cluster(settings, started, gateways)
    finally:
        for gateway in gateways:
            await gateway.stop()
        for node in started.values():
            await node.stop()
