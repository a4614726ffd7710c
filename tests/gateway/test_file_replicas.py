"""Which storage nodes hold a file, as the API reports it (one replica by default)."""

from __future__ import annotations

import pytest

from tests.support.harness import Cluster

# On PostgreSQL as well: these answers depend on the store's own behaviour.
pytestmark = pytest.mark.both_stores


async def test_a_created_file_reports_its_node_as_its_only_replica(cluster: Cluster) -> None:
    client = cluster.client("alice")
    created = await client.post("/v1/files/docs/f.txt", content=b"hello")
    assert created.status_code == 201
    body = created.json()
    assert body["instance_id"] in cluster.nodes
    assert body["replicas"] == [body["instance_id"]]
    for response in (
        await client.get("/v1/files/docs/f.txt"),
        await client.head("/v1/files/docs/f.txt"),
    ):
        assert response.status_code == 200
        assert response.headers["x-callfs-replicas"] == body["instance_id"]
    listed = (await client.get("/v1/files/docs/")).json()
    assert [item["replicas"] for item in listed] == [[body["instance_id"]]]


async def test_a_replaced_file_reports_the_node_holding_its_new_content(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/f.txt", content=b"one")
    replaced = await client.put("/v1/files/f.txt", content=b"two")
    assert replaced.status_code == 200
    body = replaced.json()
    assert body["replicas"] == [body["instance_id"]]
    head = await client.head("/v1/files/f.txt")
    assert head.headers["x-callfs-replicas"] == body["instance_id"]


async def test_a_directory_has_no_replicas(cluster: Cluster) -> None:
    client = cluster.client("alice")
    created = await client.post("/v1/files/d/")
    assert created.status_code == 201
    assert created.json()["replicas"] == []
    head = await client.head("/v1/files/d")
    assert head.status_code == 200
    assert "x-callfs-replicas" not in head.headers
