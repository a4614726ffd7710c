"""``GET /v1/admin/cluster``: the storage nodes, their usage, replication and repair, for root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callfs import repairer
from tests.gateway.test_files import error_code
from tests.support.harness import Cluster, make_settings, running_cluster


@pytest.fixture
async def replicated(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = make_settings(
        tmp_path, "sqlite", None, replication={"factor": 2, "repair_interval": "0s"}
    )
    async with running_cluster(settings, nodes=3) as cluster:
        yield cluster


async def test_root_sees_every_node_and_the_replication(replicated: Cluster) -> None:
    answer = await replicated.client("root").get("/v1/admin/cluster")
    assert answer.status_code == 200
    body = answer.json()
    assert body["replication"] == {"factor": 2, "write_quorum": 2}
    assert [node["instance_id"] for node in body["nodes"]] == ["node-0", "node-1", "node-2"]
    for node in body["nodes"]:
        assert node["up"] is True
        assert node["address"] == replicated.endpoints()[node["instance_id"]]
        assert node["total_bytes"] >= node["free_bytes"] > 0
    assert body["repair"] == {"last_pass": None, "under_replicated": None}


async def test_a_stopped_node_shows_down_and_the_repair_pass_its_files(
    replicated: Cluster,
) -> None:
    alice = replicated.client("alice")
    for n in range(6):
        assert (await alice.post(f"/v1/files/a{n}", content=b"abc" * n)).status_code == 201
    await replicated.stop_node("node-2")
    # A read of each file finds out node-2 is down where it holds a copy.
    for n in range(6):
        assert (await alice.get(f"/v1/files/a{n}")).status_code == 200
    await repairer.for_runtime(replicated.gateway.runtime).run_pass()
    body = (await replicated.client("root").get("/v1/admin/cluster")).json()
    stopped = next(node for node in body["nodes"] if node["instance_id"] == "node-2")
    assert stopped["free_bytes"] is None
    assert sum(node["replicas"] for node in body["nodes"]) == 12
    assert all(node["draining"] is False for node in body["nodes"])
    assert body["repair"]["last_pass"] > 0
    assert isinstance(body["repair"]["under_replicated"], int)


async def test_only_root_may_ask(replicated: Cluster) -> None:
    denied = await replicated.client("alice").get("/v1/admin/cluster")
    assert denied.status_code == 403 and error_code(denied) == "PERMISSION_DENIED"
    anonymous = await replicated.client("anonymous").get("/v1/admin/cluster")
    assert anonymous.status_code == 401
