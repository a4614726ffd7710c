"""Replicas spread across failure domains: 4 nodes in 2 zones, R=2.

Real storage nodes over gRPC and a real gateway; the zones come from the static
``peer_domains`` setting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callfs.backends.storage_node import StorageNodeBackend
from callfs.placement import rank
from tests.support.harness import Cluster, make_settings, running_cluster

ZONES = {"node-0": "zone-a", "node-1": "zone-a", "node-2": "zone-b", "node-3": "zone-b"}
PATHS = [f"/spread/file-{n}.txt" for n in range(16)]


@pytest.fixture
async def zoned(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = make_settings(
        tmp_path,
        "sqlite",
        None,
        replication={"factor": 2},
        instance_discovery={
            "peer_domains": {
                name: {"zone": zone, "host": f"host-{name}"} for name, zone in ZONES.items()
            }
        },
    )
    async with running_cluster(settings, nodes=4) as cluster:
        yield cluster


def backend(cluster: Cluster) -> StorageNodeBackend:
    return cluster.gateway.runtime.nodes


async def test_every_new_file_has_its_two_replicas_in_different_zones(zoned: Cluster) -> None:
    # Without zones, some of these paths would have both replicas in one zone.
    assert any(len({ZONES[n] for n in rank(path, ZONES)[:2]}) == 1 for path in PATHS)
    alice = zoned.client("alice")
    for path in PATHS:
        created = await alice.post(f"/v1/files{path}", content=path.encode())
        assert created.status_code == 201
        replicas = created.json()["replicas"]
        assert len(replicas) == 2
        assert {ZONES[node] for node in replicas} == {"zone-a", "zone-b"}, path


async def test_a_repair_copy_goes_to_the_zone_that_holds_no_replica(zoned: Cluster) -> None:
    for path in PATHS:
        for kept in ZONES:
            (target,) = await backend(zoned).choose_more(path, 1, exclude={kept})
            assert ZONES[target] != ZONES[kept], (path, kept)


async def test_with_one_zone_left_both_replicas_share_it_rather_than_fail(zoned: Cluster) -> None:
    await zoned.stop_node("node-2")
    await zoned.stop_node("node-3")
    alice = zoned.client("alice")
    for path in PATHS[:4]:
        created = await alice.post(f"/v1/files{path}", content=b"one zone")
        assert created.status_code == 201
        assert sorted(created.json()["replicas"]) == ["node-0", "node-1"]
