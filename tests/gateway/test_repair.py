"""The repairer: every local-volume file back to R healthy replicas (R=2 of 3 nodes).

Passes are run by hand on an injected clock; the nodes, the store and the copies are
real (in-process gRPC nodes, SQLite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from callfs.discovery.base import StaticDiscovery
from callfs.entry import utcnow
from callfs.repairer import Pace, Repairer
from tests.support.harness import Cluster, make_settings, running_cluster
from tests.support.replicas import Clock, holding, replicas_of

REPAIR_AFTER = 600.0


@pytest.fixture
async def replicated(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = make_settings(
        tmp_path,
        "sqlite",
        None,
        replication={"factor": 2, "write_quorum": 1, "repair_interval": "0s"},
    )
    async with running_cluster(settings, nodes=3) as cluster:
        yield cluster


def repairer(cluster: Cluster, clock: Clock) -> Repairer:
    runtime = cluster.gateway.runtime
    return Repairer(
        runtime.store,
        runtime.nodes,
        repair_after=REPAIR_AFTER,
        rate=1e12,
        metrics=runtime.metrics,
        clock=clock,
        # The files of a test are seconds old: the pass must not take them for new ones.
        wall=lambda: utcnow() + timedelta(minutes=1),
    )


async def upload(cluster: Cluster, count: int) -> dict[str, bytes]:
    alice = cluster.client("alice")
    files = {f"/v1/files/f{n}.bin": f"content {n} ".encode() * (1000 + n) for n in range(count)}
    for url, data in files.items():
        assert (await alice.post(url, content=data)).status_code == 201
    return files


async def test_a_wiped_volume_is_filled_again(replicated: Cluster) -> None:
    files = await upload(replicated, 10)
    on_node_0 = [url for url in files if "node-0" in await replicas_of(replicated, url)]
    assert on_node_0
    for stored in replicated.nodes["node-0"].root.rglob("*"):
        if stored.is_file():
            stored.unlink()
    clock = Clock()
    report = await repairer(replicated, clock).run_pass()
    assert (report.checked, report.repaired, report.degraded) == (10, len(on_node_0), 0)
    registry = replicated.gateway.runtime.metrics.registry
    copied = sum(len(files[url]) for url in on_node_0)
    assert registry.get_sample_value("callfs_repair_objects_total") == len(on_node_0)
    assert registry.get_sample_value("callfs_repair_bytes_total") == copied
    assert registry.get_sample_value("callfs_files_under_replicated") == 0
    for url, data in files.items():
        replicas = await replicas_of(replicated, url)
        assert len(replicas) == 2
        assert holding(replicated, data) == sorted(replicas)
    again = await repairer(replicated, clock).run_pass()
    assert (again.repaired, again.degraded, again.short) == (0, 0, [])


async def test_a_missing_node_is_waited_for_then_replaced(replicated: Cluster) -> None:
    files = await upload(replicated, 10)
    on_node_1 = [url for url in files if "node-1" in await replicas_of(replicated, url)]
    assert on_node_1
    await replicated.stop_node("node-1")
    clock = Clock()
    repair = repairer(replicated, clock)

    waiting = await repair.run_pass()
    assert waiting.missing == ["node-1"]
    assert (waiting.repaired, waiting.degraded) == (0, len(on_node_1))
    registry = replicated.gateway.runtime.metrics.registry
    assert registry.get_sample_value("callfs_files_under_replicated") == len(on_node_1)
    clock.now += REPAIR_AFTER - 1
    assert (await repair.run_pass()).repaired == 0

    clock.now += 2
    replaced = await repair.run_pass()
    assert (replaced.repaired, replaced.degraded, replaced.short) == (len(on_node_1), 0, [])
    alice = replicated.client("alice")
    for url, data in files.items():
        replicas = await replicas_of(replicated, url)
        assert len(replicas) == 2 and "node-1" not in replicas
        # node-1's volume keeps its stale copies until it comes back to the reconciler.
        assert [n for n in holding(replicated, data) if n != "node-1"] == sorted(replicas)
        assert (await alice.get(url)).content == data


async def test_a_file_written_on_one_node_gets_its_second_replica(replicated: Cluster) -> None:
    await replicated.stop_node("node-1")
    await replicated.stop_node("node-2")
    alice = replicated.client("alice")
    data = b"written while two of three nodes were down" * 100
    created = await alice.post("/v1/files/alone.bin", content=data)
    assert created.status_code == 201
    assert created.json()["replicas"] == ["node-0"]
    await replicated.restart_node("node-1")
    await replicated.restart_node("node-2")
    report = await repairer(replicated, Clock()).run_pass()
    assert report.repaired == 1
    replicas = await replicas_of(replicated, "/v1/files/alone.bin")
    assert len(replicas) == 2 and replicas[0] == "node-0"
    assert holding(replicated, data) == sorted(replicas)


async def test_a_copy_that_does_not_match_is_dropped(replicated: Cluster) -> None:
    await replicated.stop_node("node-1")
    await replicated.stop_node("node-2")
    data = b"x" * 5000
    assert (
        await replicated.client("alice").post("/v1/files/bad.bin", content=data)
    ).status_code == 201
    await replicated.restart_node("node-1")
    await replicated.restart_node("node-2")
    (stored,) = [
        p for p in replicated.nodes["node-0"].root.rglob("*") if p.is_file() and p.suffix != ".sums"
    ]
    # Rot the only copy: the node refuses to send it, so no copy is made from it.
    stored.write_bytes(b"y" * 5000)
    report = await repairer(replicated, Clock()).run_pass()
    assert (report.repaired, report.short) == (0, ["/bad.bin"])
    assert await replicas_of(replicated, "/v1/files/bad.bin") == ["node-0"]
    assert len(replicated.stored_objects()) == 1


async def test_the_pace_keeps_copies_to_the_rate() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    pace = Pace(1000.0, clock=clock, sleep=sleep)
    for _ in range(5):
        await pace(500)
    # 2500 bytes at 1000 B/s take 2.5 s, whatever the chunks.
    assert sum(slept) == pytest.approx(2.5)
    assert clock.now - 1000.0 == pytest.approx(2.5)


async def test_a_draining_node_is_emptied_without_a_moment_below_two_copies(
    replicated: Cluster,
) -> None:
    files = await upload(replicated, 12)
    on_node_1 = [url for url in files if "node-1" in await replicas_of(replicated, url)]
    assert on_node_1
    replicated.gateway.runtime.nodes.draining = frozenset({"node-1"})
    clock = Clock()

    report = await repairer(replicated, clock).run_pass()
    assert (report.moved, report.degraded, report.short) == (len(on_node_1), 0, [])
    assert report.replicas["node-1"] == 0
    registry = replicated.gateway.runtime.metrics.registry
    assert registry.get_sample_value("callfs_node_replicas", {"instance": "node-1"}) == 0
    alice = replicated.client("alice")
    for url, data in files.items():
        replicas = await replicas_of(replicated, url)
        assert len(replicas) == 2 and "node-1" not in replicas
        assert holding(replicated, data) == sorted(replicas)
        assert (await alice.get(url)).content == data
    assert replicated.stored_objects() == [
        p for p in replicated.stored_objects() if "node-1" not in p.parts
    ]
    # New files keep off it too, and a second pass has nothing left to move.
    fresh = await alice.post("/v1/files/fresh.bin", content=b"fresh")
    assert "node-1" not in fresh.json()["replicas"]
    assert (await repairer(replicated, clock).run_pass()).moved == 0


async def test_a_joining_node_takes_its_share(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "sqlite",
        None,
        replication={"factor": 2, "repair_interval": "0s"},
    )
    async with running_cluster(settings, nodes=4) as cluster:
        discovery = cluster.gateway.runtime.discovery
        assert isinstance(discovery, StaticDiscovery)
        everyone = dict(discovery.endpoints())
        discovery.set({name: address for name, address in everyone.items() if name != "node-3"})
        files = await upload(cluster, 24)
        before = [await replicas_of(cluster, url) for url in files]
        assert all("node-3" not in replicas for replicas in before)
        discovery.set(everyone)
        clock = Clock()
        report = await repairer(cluster, clock).run_pass()
        assert 0 < report.moved < len(files)
        assert report.replicas["node-3"] > 0
        for url, data in files.items():
            replicas = await replicas_of(cluster, url)
            assert len(replicas) == 2
            assert holding(cluster, data) == sorted(replicas)
            assert (await cluster.client("alice").get(url)).content == data
        assert (await repairer(cluster, clock).run_pass()).moved == 0
