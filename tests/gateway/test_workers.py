"""``server.workers``: one gateway served by several processes (callfs.workers), as a
user runs it: ``callfs gateway`` against real PostgreSQL, Redis and a storage node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.dev import CALLFS, environment
from tests.support.harness import INTERNAL_SECRET, LINK_SECRET, make_settings, start_node
from tests.support.polling import wait_for, wait_until

KEY = "workers-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
STARTED = re.compile(r"2 worker processes serve 127\.0\.0\.1:(\d+) \(metrics: 127\.0\.0\.1:(\d+)\)")


@dataclass
class Gateway:
    process: asyncio.subprocess.Process
    log: Path
    url: str
    metrics_url: str

    def children(self) -> set[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in path.read_text().split()}

    async def worker_metrics(self) -> dict[str, float]:
        """Per worker: whether it answered the scrape, and the API requests it counted."""
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"{self.metrics_url}/metrics")).text
        seen: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "callfs_worker_up":
                    seen[f"up {sample.labels['worker']}"] = sample.value
                elif sample.name == "callfs_http_requests_total":
                    key = f"requests {sample.labels['worker']}"
                    seen[key] = seen.get(key, 0.0) + sample.value
        return seen


def gateway_environment(
    dsn: str, redis_url: str, peers: dict[str, str], **variables: str
) -> dict[str, str]:
    """``callfs gateway`` of two workers on ports the system picks (and ``variables``)."""
    return environment(
        CALLFS_SERVER_WORKERS="2",
        CALLFS_SERVER_LISTEN_ADDR="127.0.0.1:0",
        CALLFS_SERVER_PROTOCOL="http",
        CALLFS_SERVER_SHUTDOWN_TIMEOUT="5s",
        CALLFS_METRICS_LISTEN_ADDR="127.0.0.1:0",
        CALLFS_AUTH_API_KEYS=KEY,
        CALLFS_AUTH_INTERNAL_PROXY_SECRET=INTERNAL_SECRET,
        CALLFS_AUTH_SINGLE_USE_LINK_SECRET=LINK_SECRET,
        CALLFS_METADATA_STORE_TYPE="postgres",
        CALLFS_METADATA_STORE_DSN=dsn,
        CALLFS_DLM_TYPE="redis",
        CALLFS_DLM_REDIS_ADDR=redis_url.removeprefix("redis://").split("/")[0],
        CALLFS_INSTANCE_DISCOVERY_PEER_ENDPOINTS=json.dumps(peers),
        CALLFS_LOG_FORMAT="console",
        CALLFS_LOG_LEVEL="info",
        **variables,
    )


@pytest.fixture
async def gateway(tmp_path: Path, postgres_dsn: str, redis_url: str) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path, postgres_dsn, redis_url) as running:
        yield running


@pytest.fixture
async def watched_gateway(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> AsyncIterator[Gateway]:
    """Two workers, each killed once it has not answered for 3 s."""
    async with running_gateway(
        tmp_path, postgres_dsn, redis_url, CALLFS_SERVER_WORKER_TIMEOUT="3s"
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def running_gateway(
    tmp_path: Path, postgres_dsn: str, redis_url: str, **variables: str
) -> AsyncIterator[Gateway]:
    settings = make_settings(tmp_path, "postgres", postgres_dsn)
    node = await start_node(settings, "node-1", tmp_path / "node-1")
    log = tmp_path / "gateway.log"
    peers = {"node-1": f"127.0.0.1:{node.port}"}
    env = gateway_environment(postgres_dsn, redis_url, peers, **variables)
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            str(CALLFS), "gateway", env=env, stdout=output, stderr=output
        )
    try:
        await wait_until(
            lambda: STARTED.search(log.read_text()) is not None or process.returncode is not None,
            timeout=60,
            what="the gateway said where it serves",
        )
        found = STARTED.search(log.read_text())
        assert found, log.read_text()
        running = Gateway(
            process, log, f"http://127.0.0.1:{found[1]}", f"http://127.0.0.1:{found[2]}"
        )
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await node.stop()


async def served(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"{url}/health")).status_code == 200
    except httpx.TransportError:
        return False


async def test_two_workers_serve_one_listener_and_their_metrics_are_joined(
    gateway: Gateway,
) -> None:
    await wait_for(lambda: served(gateway.url), timeout=60, what="the workers serve")
    for index in range(10):
        # A connection each: the kernel gives each to whichever worker accepts first.
        async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=10) as client:
            put = await client.put(f"/v1/files/w/{index}.txt", content=f"file {index}".encode())
            assert put.status_code == 201, put.text
        async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=10) as client:
            got = await client.get(f"/v1/files/w/{index}.txt")
            assert got.content == f"file {index}".encode()
    assert len(gateway.children()) == 3  # two workers and the metrics process
    seen = await gateway.worker_metrics()
    assert seen["up 0"] == 1.0 and seen["up 1"] == 1.0
    # Every API request is counted once, by the worker that served it.
    assert seen.get("requests 0", 0) + seen.get("requests 1", 0) >= 20


async def test_a_worker_that_dies_is_replaced_and_sigterm_stops_them_all(
    gateway: Gateway,
) -> None:
    await wait_for(lambda: served(gateway.url), timeout=60, what="the workers serve")
    await wait_for(lambda: _both_up(gateway), what="both workers answer the metrics process")
    before = gateway.children()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    await wait_until(
        lambda: victim not in gateway.children() and len(gateway.children()) == 3,
        what="a replacement was started",
    )
    await wait_for(lambda: _both_up(gateway), timeout=30, what="both workers answer again")
    assert await served(gateway.url)
    assert "ended (killed by SIGKILL): starting another" in gateway.log.read_text()
    children = gateway.children()
    gateway.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        assert await gateway.process.wait() == 0, gateway.log.read_text()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    assert not await served(gateway.url)


async def test_a_worker_that_stops_answering_is_killed_and_replaced(
    watched_gateway: Gateway,
) -> None:
    gateway = watched_gateway
    await wait_for(lambda: served(gateway.url), timeout=60, what="the workers serve")
    await wait_for(lambda: _both_up(gateway), what="both workers answer the metrics process")
    before = gateway.children()
    victim = min(before)
    os.kill(victim, signal.SIGSTOP)  # alive, but its event loop runs no more
    await wait_until(
        lambda: victim not in gateway.children() and len(gateway.children()) == 3,
        timeout=30,
        what="the stopped child was killed and replaced",
    )
    log = gateway.log.read_text()
    assert re.search(r"has not answered for \d+s \(server\.worker_timeout\): killed", log), log
    assert "ended (killed by SIGKILL): starting another" in log
    await wait_for(lambda: _both_up(gateway), timeout=30, what="both workers answer again")
    assert await served(gateway.url)
    # The others said all along that they serve: none was taken for silent.
    assert before - {victim} <= gateway.children()
    assert gateway.log.read_text().count("has not answered") == 1


async def _both_up(gateway: Gateway) -> bool:
    try:
        seen = await gateway.worker_metrics()
    except httpx.TransportError:
        return False
    return seen.get("up 0") == 1.0 and seen.get("up 1") == 1.0


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


async def test_a_worker_that_cannot_start_stops_the_gateway_with_exit_code_1(
    tmp_path: Path, postgres_dsn: str, redis_url: str
) -> None:
    missing = postgres_dsn.rsplit("/", 1)[0] + "/callfs_never_created"
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            str(CALLFS),
            "gateway",
            env=gateway_environment(missing, redis_url, {}),
            stdout=output,
            stderr=output,
        )
    try:
        async with asyncio.timeout(60):
            assert await process.wait() == 1
    finally:
        if process.returncode is None:
            process.kill()
    text = log.read_text()
    assert "failed to start" in text and "stopping" in text, text
