"""Storage nodes that stop: 503 for their files only, no new files placed there."""

from __future__ import annotations

from collections.abc import AsyncIterator

from callfs.placement import rank
from tests.gateway.test_files import error_code
from tests.support.harness import Cluster
from tests.support.polling import wait_until

MiB = 1024 * 1024


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


def paths_owned_by(node: str, nodes: list[str], count: int, prefix: str = "/fresh") -> list[str]:
    """``count`` paths whose rendezvous choice among ``nodes`` is ``node``."""
    candidates = (f"{prefix}/f{index}.txt" for index in range(10_000))
    return [path for path in candidates if rank(path, nodes)[0] == node][:count]


async def test_new_files_owned_by_a_node_just_stopped_are_created_elsewhere(
    cluster: Cluster,
) -> None:
    client = cluster.client("alice")
    warm, *fresh = paths_owned_by("node-0", list(cluster.nodes), 6)
    # The gateway has just seen node-0 answer, so nothing tells it yet that it stopped.
    before = await client.post(f"/v1/files{warm}", content=b"before")
    assert before.json()["instance_id"] == "node-0"
    await cluster.stop_node("node-0")
    for path in fresh:
        created = await client.post(f"/v1/files{path}", content=path.encode())
        assert created.status_code == 201, created.text
        assert created.json()["instance_id"] == "node-1"
        assert (await client.get(f"/v1/files{path}")).content == path.encode()
    assert (await client.get(f"/v1/files{warm}")).status_code == 503
    assert cluster.temp_files() == []


async def test_a_node_stopping_mid_upload_of_a_new_file_gives_503_and_leaves_nothing(
    cluster: Cluster,
) -> None:
    client = cluster.client("alice")
    (path,) = paths_owned_by("node-0", list(cluster.nodes), 1)

    async def body() -> AsyncIterator[bytes]:
        yield bytes(3 * MiB)
        await wait_until(lambda: bool(cluster.temp_files()), what="the upload reached node-0")
        await cluster.stop_node("node-0")
        yield bytes(MiB)

    response = await client.post(f"/v1/files{path}", content=body())
    assert response.status_code == 503
    assert error_code(response) == "BACKEND_UNAVAILABLE"
    assert (await client.head(f"/v1/files{path}")).status_code == 404
    # The rest of the body went nowhere else. node-0 stopped before it could keep anything
    # but a temp file, which it sweeps when it starts again.
    assert cluster.stored_objects() == []
    assert all(p.is_relative_to(cluster.nodes["node-0"].root) for p in cluster.temp_files())
