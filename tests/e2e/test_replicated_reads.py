"""A download survives the SIGKILL of the node it is reading from: it goes on from the
same byte on the file's other replica, inside the same response, through the ingress.
Needs the local cluster (it kills a process).
"""

from __future__ import annotations

import hashlib

import pytest

from tests.e2e.target import Target, chunks
from tools.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster]

MIB = 1024 * 1024
SIZE = 200 * MIB


def test_a_download_survives_the_kill_of_its_first_replica(
    cluster: Cluster, target: Target, home: str
) -> None:
    path = f"/v1/files{home}/big.bin"
    expected = hashlib.sha256()
    for piece in chunks(SIZE):
        expected.update(piece)
    created = target.client(1).post(path, content=chunks(SIZE))
    assert created.status_code == 201, created.text
    first, second = created.json()["replicas"]
    received = hashlib.sha256()
    length = 0
    try:
        with target.client(1, door=2).stream("GET", path) as response:
            assert response.status_code == 200
            pieces = response.iter_raw()
            while length < 16 * MIB:
                piece = next(pieces)
                received.update(piece)
                length += len(piece)
            cluster.kill_node(first)
            for piece in pieces:
                received.update(piece)
                length += len(piece)
    finally:
        if not cluster.running(first):
            cluster.restart_node(first)
    assert length == SIZE
    assert received.hexdigest() == expected.hexdigest()
    assert second != first
