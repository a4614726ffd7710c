"""A storage node killed with SIGKILL. Every file lives on two of the three nodes (the
cluster's replication factor), so every file stays readable through both front doors;
new files and replaces go to the two other nodes from the first upload on; and its
restart brings new placements back to it. Needs the local cluster (it kills a process).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import httpx
import pytest

from callfs.placement import rank
from tests.e2e.target import Target, eventually
from tools.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster]

VICTIM = "storage-node-1"


def place_around_the_victim(client: httpx.Client, home: str) -> dict[str, list[str]]:
    """Upload files until VICTIM holds a first replica, a second one, and one file is
    not on it at all; return ``path -> replicas``."""
    placed: dict[str, list[str]] = {}
    for index in range(300):
        path = f"{home}/spread-{index}.txt"
        response = client.post(f"/v1/files{path}", content=path.encode())
        assert response.status_code == 201, response.text
        replicas = response.json()["replicas"]
        assert len(replicas) == 2, replicas
        placed[path] = replicas
        kinds = {r.index(VICTIM) if VICTIM in r else None for r in placed.values()}
        if kinds == {0, 1, None}:
            return placed
    raise AssertionError(f"placement never gave every kind of file: {placed}")


def paths_owned_by(node: str, nodes: list[str], prefix: str, count: int) -> list[str]:
    """``count`` paths under ``prefix`` whose rendezvous choice among ``nodes`` is ``node``."""
    candidates = (f"{prefix}-{index}.txt" for index in range(100 * count))
    return [path for path in candidates if rank(path, nodes)[0] == node][:count]


@pytest.fixture
def killed(cluster: Cluster, user1: httpx.Client, home: str) -> Iterator[dict[str, list[str]]]:
    """Files around VICTIM, then VICTIM killed; restarted afterwards whatever happened."""
    placed = place_around_the_victim(user1, home)
    cluster.kill_node(VICTIM)
    try:
        yield placed
    finally:
        if not cluster.running(VICTIM):
            cluster.restart_node(VICTIM)


def test_a_killed_node_costs_no_read(target: Target, killed: dict[str, list[str]]) -> None:
    for door in (1, 2):
        client = target.client(1, door)
        for path in killed:
            read = client.get(f"/v1/files{path}")
            assert (read.status_code, read.content) == (200, path.encode()), read.text
            tail = client.get(f"/v1/files{path}", headers={"Range": "bytes=-4"})
            assert (tail.status_code, tail.content) == (206, path.encode()[-4:])


def test_uploads_and_replaces_right_after_the_kill_keep_two_replicas(
    cluster: Cluster, target: Target, killed: dict[str, list[str]], home: str
) -> None:
    # Nothing has failed yet since the kill: no gateway has seen VICTIM down, and each new
    # path below would have had VICTIM as its first replica.
    fresh = paths_owned_by(VICTIM, cluster.nodes, f"{home}/after", 10)
    for index, path in enumerate(fresh):
        client = target.client(1, door=1 + index % 2)
        response = client.post(f"/v1/files{path}", content=path.encode())
        assert response.status_code == 201, response.text
        replicas = response.json()["replicas"]
        assert len(replicas) == 2 and VICTIM not in replicas
        assert client.get(f"/v1/files{path}").content == path.encode()
    on_victim = [path for path, replicas in killed.items() if VICTIM in replicas]
    for index, path in enumerate(on_victim):
        client = target.client(1, door=1 + index % 2)
        replaced = client.put(f"/v1/files{path}", content=b"replaced " + path.encode())
        assert replaced.status_code == 200, replaced.text
        replicas = replaced.json()["replicas"]
        assert len(replicas) == 2 and VICTIM not in replicas
        assert client.get(f"/v1/files{path}").content == b"replaced " + path.encode()


def test_restarted_node_takes_new_files_again(
    cluster: Cluster, target: Target, killed: dict[str, list[str]], home: str
) -> None:
    cluster.restart_node(VICTIM)
    fresh = iter(paths_owned_by(VICTIM, cluster.nodes, f"{home}/back", 200))

    def create_next(client: httpx.Client) -> httpx.Response:
        return client.post(f"/v1/files{next(fresh)}", content=b"back")

    for door in (1, 2):
        client = target.client(1, door)
        # The gateway's health check marks the node up again: new files go there once more.
        placed = eventually(
            partial(create_next, client),
            lambda response: response.json().get("replicas", [None])[0] == VICTIM,
            what=f"a new file placed on {VICTIM} after its restart",
        )
        assert placed.status_code == 201
        for path in killed:
            assert client.get(f"/v1/files{path}").status_code == 200
