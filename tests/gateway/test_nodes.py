"""Storage nodes that stop: 503 for their files only, no new files placed there."""

from __future__ import annotations

from tests.gateway.test_files import error_code
from tests.support.harness import Cluster


async def files_on_each_node(cluster: Cluster) -> dict[str, str]:
    client = cluster.client("alice")
    placed: dict[str, str] = {}
    index = 0
    while len(placed) < len(cluster.nodes):
        path = f"/spread/f{index}.txt"
        response = await client.post(f"/v1/files{path}", content=path.encode())
        placed.setdefault(response.json()["instance_id"], path)
        index += 1
    return placed


async def test_stopped_node_gives_503_for_its_files_only(cluster: Cluster) -> None:
    placed = await files_on_each_node(cluster)
    await cluster.stop_node("node-0")
    client = cluster.client("alice")
    down = await client.get(f"/v1/files{placed['node-0']}")
    assert down.status_code == 503
    assert error_code(down) == "BACKEND_UNAVAILABLE"
    up = await client.get(f"/v1/files{placed['node-1']}")
    assert up.status_code == 200
    assert up.content == placed["node-1"].encode()
    # Metadata still answers for the unavailable file.
    assert (await client.head(f"/v1/files{placed['node-0']}")).status_code == 200
    for index in range(8):
        created = await client.post(f"/v1/files/after/{index}.txt", content=b"x")
        assert created.status_code == 201
        assert created.json()["instance_id"] == "node-1"


async def test_restarted_node_serves_its_files_again(cluster: Cluster) -> None:
    placed = await files_on_each_node(cluster)
    await cluster.stop_node("node-0")
    client = cluster.client("alice")
    assert (await client.get(f"/v1/files{placed['node-0']}")).status_code == 503
    await cluster.restart_node("node-0")
    response = await client.get(f"/v1/files{placed['node-0']}")
    assert response.status_code == 200
    assert response.content == placed["node-0"].encode()


async def test_all_nodes_down_create_is_503_and_leaves_no_metadata(cluster: Cluster) -> None:
    await cluster.stop_node("node-0")
    await cluster.stop_node("node-1")
    client = cluster.client("alice")
    response = await client.post("/v1/files/nowhere.txt", content=b"x")
    assert response.status_code == 503
    assert error_code(response) == "BACKEND_UNAVAILABLE"
    assert (await client.head("/v1/files/nowhere.txt")).status_code == 404
