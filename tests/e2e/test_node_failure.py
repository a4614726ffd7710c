"""A storage node killed with SIGKILL: its files answer 503, everything else keeps working,
and its restart brings them back. Needs the local cluster (it kills a process).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import httpx
import pytest

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


def test_new_uploads_avoid_the_killed_node_once_seen_down(
    target: Target, killed: dict[str, str], home: str
) -> None:
    # Static discovery still lists the node: each gateway learns it is down from a failed call
    # (in Kubernetes its EndpointSlice turns not-ready as well).
    for door in (1, 2):
        assert target.client(1, door).get(f"/v1/files{killed[VICTIM]}").status_code == 503
    for index in range(10):
        client = target.client(1, door=1 + index % 2)
        response = client.post(f"/v1/files{home}/after-{index}.txt", content=b"fresh")
        assert response.status_code == 201, response.text
        assert response.json()["instance_id"] != VICTIM
        assert client.get(f"/v1/files{home}/after-{index}.txt").content == b"fresh"


def test_restarted_node_serves_its_files_again(
    cluster: Cluster, target: Target, killed: dict[str, str]
) -> None:
    path = f"/v1/files{killed[VICTIM]}"
    assert target.client(1).get(path).status_code == 503
    cluster.restart_node(VICTIM)
    for door in (1, 2):
        client = target.client(1, door)
        back = eventually(
            partial(client.get, path),
            lambda response: response.status_code != 503,
            what=f"{VICTIM}'s file after its restart",
        )
        assert back.status_code == 200
        assert back.content == killed[VICTIM].encode()
