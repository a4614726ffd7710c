"""A storage node's metrics listener: its RPCs, bytes, fsyncs and volume, scraped for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from callfs_storage_node.metrics import NodeMetrics
from callfs_storage_node.server import build_server
from callfs_storage_node.volume import SMALL_WRITE_BYTES
from prometheus_client.parser import text_string_to_metric_families

from callfs.metrics import OPENMETRICS_CONTENT_TYPE
from callfs.serving import bound_port, metrics_server
from callfs.settings import load_settings
from callfs.storage.v1 import storage_pb2, storage_pb2_grpc
from tests.storage_node.conftest import METADATA, SECRET

SERVICE = "callfs.storage.v1.StorageNode"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class ScrapedNode:
    """A running node, its stub and the URL of its metrics listener."""

    root: Path
    stub: storage_pb2_grpc.StorageNodeStub
    metrics_url: str


@pytest.fixture
async def scraped(tmp_path: Path) -> AsyncIterator[ScrapedNode]:
    root = tmp_path / "volume"
    settings = load_settings(
        environ={},
        overrides={
            "auth": {"internal_proxy_secret": SECRET},
            "backend": {"localfs_root_path": str(root)},
            "metrics": {"listen_addr": "127.0.0.1:0"},
            "log": {"format": "console", "level": "warning"},
        },
    )
    metrics = NodeMetrics()
    server, port = build_server(settings, listen="127.0.0.1:0", metrics=metrics)
    await server.start()
    listener = metrics_server(metrics, settings)
    assert listener is not None
    task = asyncio.create_task(listener.serve())
    try:
        while not listener.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield ScrapedNode(
                root,
                storage_pb2_grpc.StorageNodeStub(channel),
                f"http://127.0.0.1:{bound_port(listener)}",
            )
    finally:
        listener.should_exit = True
        await task
        await server.stop(0)


async def write(stub: storage_pb2_grpc.StorageNodeStub, path: str, body: bytes) -> None:
    chunks = [body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)]

    async def requests() -> AsyncIterator[storage_pb2.WriteRequest]:
        header = storage_pb2.WriteHeader(path=path, create_parents=True)
        yield storage_pb2.WriteRequest(header=header)
        for chunk in chunks:
            yield storage_pb2.WriteRequest(chunk=chunk)
        yield storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=len(body)))

    response = await stub.Write(requests(), metadata=METADATA)
    assert response.size == len(body)


async def read(stub: storage_pb2_grpc.StorageNodeStub, path: str) -> bytes:
    call = stub.Read(storage_pb2.ReadRequest(path=path), metadata=METADATA)
    return b"".join([message.chunk async for message in call])


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return response


async def test_rpcs_bytes_fsyncs_and_the_volume_show_on_the_metrics_listener(
    scraped: ScrapedNode,
) -> None:
    small = b"s" * 3000
    # Past the bound of a small write: streamed, with the same fsyncs at its end.
    large = b"L" * (SMALL_WRITE_BYTES + 5000)
    await write(scraped.stub, "ab/small", small)
    await write(scraped.stub, "ab/large", large)
    assert await read(scraped.stub, "ab/small") == small
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await read(scraped.stub, "ab/missing")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await scraped.stub.Usage(storage_pb2.UsageRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    response = await scrape(scraped.metrics_url)
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    rpcs = "callfs_storage_node_rpcs_total"
    assert value(found, rpcs, service=SERVICE, method="Write", code="OK") == 2
    assert value(found, rpcs, service=SERVICE, method="Read", code="OK") == 1
    assert value(found, rpcs, service=SERVICE, method="Read", code="NOT_FOUND") == 1
    assert value(found, rpcs, service=SERVICE, method="Usage", code="UNAUTHENTICATED") == 1
    durations = "callfs_storage_node_rpc_duration_seconds_count"
    assert value(found, durations, service=SERVICE, method="Write") == 2
    assert value(found, durations, service=SERVICE, method="Read") == 2

    assert value(found, "callfs_storage_node_written_bytes_total") == len(small) + len(large)
    assert value(found, "callfs_storage_node_read_bytes_total") == len(small)

    fsyncs = "callfs_storage_node_fsync_duration_seconds_count"
    # Each write syncs its file and its sidecar, and their directory.
    assert value(found, fsyncs, kind="file") >= 4
    assert value(found, fsyncs, kind="directory") >= 2
    assert value(found, "callfs_storage_node_fsync_duration_seconds_sum", kind="file") > 0

    capacity = value(found, "callfs_storage_node_volume_capacity_bytes")
    free = value(found, "callfs_storage_node_volume_free_bytes")
    used = value(found, "callfs_storage_node_volume_used_bytes")
    assert 0 < free <= capacity
    # The objects, plus their checksum sidecars.
    assert len(small) + len(large) < used < capacity
    assert value(found, "callfs_storage_node_volume_objects") == 2
    assert value(found, "callfs_storage_node_temp_files") == 0

    names = {name for name, _ in found}
    assert any(name.startswith("process_") for name in names), sorted(names)
    assert any(name.startswith("python_") for name in names), sorted(names)
    assert not any(name.endswith("_created") for name in names)
    assert "_created" not in response.text


async def test_the_volume_gauges_follow_the_volume_between_scrapes(
    scraped: ScrapedNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("callfs_storage_node.metrics.SCRAPE_USAGE_MAX_AGE", 0.0)
    first = samples((await scrape(scraped.metrics_url)).text)
    assert value(first, "callfs_storage_node_volume_objects") == 0
    leftover = scraped.root / "ab" / ".callfs-tmp-leftover"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"x")
    await write(scraped.stub, "ab/one", b"1")
    second = samples((await scrape(scraped.metrics_url)).text)
    assert value(second, "callfs_storage_node_volume_objects") == 1
    assert value(second, "callfs_storage_node_temp_files") == 1


async def test_openmetrics_is_served_when_the_scrape_asks_for_it(scraped: ScrapedNode) -> None:
    await write(scraped.stub, "x", b"x")
    response = await scrape(
        scraped.metrics_url,
        accept="application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.5",
    )
    assert response.headers["content-type"] == OPENMETRICS_CONTENT_TYPE
    assert response.text.endswith("# EOF\n")
    assert "callfs_storage_node_rpcs_total" in response.text
    assert "_created" not in response.text
