"""A storage node killed with SIGKILL: its files answer 503, new files go to the other nodes
from the first upload on, everything else keeps working, and its restart brings its files
(and new placements) back. Needs the local cluster (it kills a process).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import httpx
import pytest

from callfs.placement import rank
from tests.e2e.cluster import Cluster
from tests.e2e.target import Target, code, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster]

VICTIM = "storage-node-1"


def place_one_file_per_node(client: httpx.Client, home: str, nodes: list[str]) -> dict[str, str]:
    """Upload files until every node holds one; return ``node -> path``."""
    placed: dict[str, str] = {}
    for index in range(300):
        path = f"{home}/spread-{index}.txt"
        response = client.post(f"/v1/files{path}", content=path.encode())
        assert response.status_code == 201, response.text
        placed.setdefault(response.json()["instance_id"], path)
        if len(placed) == len(nodes):
            return placed
    raise AssertionError(f"placement never used every node: {sorted(placed)}")


def paths_owned_by(node: str, nodes: list[str], prefix: str, count: int) -> list[str]:
    """``count`` paths under ``prefix`` whose rendezvous choice among ``nodes`` is ``node``."""
    candidates = (f"{prefix}-{index}.txt" for index in range(100 * count))
    return [path for path in candidates if rank(path, nodes)[0] == node][:count]


@pytest.fixture
def killed(cluster: Cluster, user1: httpx.Client, home: str) -> Iterator[dict[str, str]]:
    """A file on every node, then VICTIM killed; restarted afterwards whatever happened."""
    placed = place_one_file_per_node(user1, home, cluster.nodes)
    cluster.kill_node(VICTIM)
    try:
        yield placed
    finally:
        if not cluster.running(VICTIM):
            cluster.restart_node(VICTIM)


def test_killed_node_makes_only_its_files_unavailable(
    target: Target, killed: dict[str, str], home: str
) -> None:
    for door in (1, 2):
        client = target.client(1, door)
        lost = client.get(f"/v1/files{killed[VICTIM]}")
        assert lost.status_code == 503, lost.text
        assert code(lost) == "BACKEND_UNAVAILABLE"
        # Its metadata still answers.
        assert client.head(f"/v1/files{killed[VICTIM]}").status_code == 200
        for node, path in killed.items():
            if node != VICTIM:
                alive = client.get(f"/v1/files{path}")
                assert alive.status_code == 200
                assert alive.content == path.encode()


def test_new_uploads_right_after_the_kill_go_to_the_other_nodes(
    cluster: Cluster, target: Target, killed: dict[str, str], home: str
) -> None:
    # Nothing has failed yet since the kill: no gateway has seen VICTIM down, and each new
    # path below would have gone to VICTIM.
    fresh = paths_owned_by(VICTIM, cluster.nodes, f"{home}/after", 10)
    for index, path in enumerate(fresh):
        client = target.client(1, door=1 + index % 2)
        response = client.post(f"/v1/files{path}", content=path.encode())
        assert response.status_code == 201, response.text
        assert response.json()["instance_id"] != VICTIM
        assert client.get(f"/v1/files{path}").content == path.encode()
    for door in (1, 2):
        client = target.client(1, door)
        lost = client.get(f"/v1/files{killed[VICTIM]}")
        assert lost.status_code == 503, lost.text
        assert code(lost) == "BACKEND_UNAVAILABLE"
        for node, path in killed.items():
            if node != VICTIM:
                assert client.get(f"/v1/files{path}").content == path.encode()


def test_restarted_node_serves_its_files_and_takes_new_ones_again(
    cluster: Cluster, target: Target, killed: dict[str, str], home: str
) -> None:
    path = f"/v1/files{killed[VICTIM]}"
    assert target.client(1).get(path).status_code == 503
    cluster.restart_node(VICTIM)
    fresh = iter(paths_owned_by(VICTIM, cluster.nodes, f"{home}/back", 200))

    def create_next(client: httpx.Client) -> httpx.Response:
        return client.post(f"/v1/files{next(fresh)}", content=b"back")

    for door in (1, 2):
        client = target.client(1, door)
        back = eventually(
            partial(client.get, path),
            lambda response: response.status_code != 503,
            what=f"{VICTIM}'s file after its restart",
        )
        assert back.status_code == 200
        assert back.content == killed[VICTIM].encode()
        # The gateway's health check marks the node up again: new files go there once more.
        placed = eventually(
            partial(create_next, client),
            lambda response: response.json().get("instance_id") == VICTIM,
            what=f"a new file placed on {VICTIM} after its restart",
        )
        assert placed.status_code == 201
