"""Replica faults on the local cluster (three nodes, two replicas each): two nodes
stopped, and a byte flipped on one replica's disk. Needs the local cluster.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.target import WAIT_TIMEOUT, Target, code
from tools.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster]


@pytest.fixture
def restarts(cluster: Cluster) -> Iterator[None]:
    yield
    for node in cluster.nodes:
        if not cluster.running(node):
            cluster.restart_node(node)


def stored_files(cluster: Cluster, node: str, data: bytes) -> list[Path]:
    digest = hashlib.sha256(data).hexdigest()
    return [
        stored
        for stored in (cluster.root / "volumes" / node).rglob("*")
        if stored.is_file()
        and stored.suffix != ".sums"
        and not stored.name.startswith(".callfs-tmp-")
        and hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    ]


def test_two_nodes_stopped_reads_with_a_live_replica_and_no_write_below_the_quorum(
    cluster: Cluster, target: Target, home: str, restarts: None
) -> None:
    client = target.client(1)
    survivor = cluster.nodes[0]
    files: dict[str, tuple[bytes, list[str]]] = {}
    for n in range(12):
        path = f"/v1/files{home}/t{n}.txt"
        data = f"two down {n} {home}".encode()
        created = client.post(path, content=data)
        assert created.status_code == 201
        files[path] = (data, created.json()["replicas"])
    for node in cluster.nodes[1:]:
        cluster.kill_node(node)

    for door in (1, 2):
        reader = target.client(1, door)
        for path, (data, replicas) in files.items():
            read = reader.get(path)
            if survivor in replicas:
                assert (read.status_code, read.content) == (200, data), path
            else:
                assert read.status_code == 503 and code(read) == "BACKEND_UNAVAILABLE"
    # Each refusal first waits for the stopped nodes to listen again (0.5 s): four do.
    for path in list(files)[:4]:
        refused = client.put(path, content=b"must not land")
        assert refused.status_code == 503, refused.text
    refused = client.post(f"/v1/files{home}/new.txt", content=b"must not land")
    assert refused.status_code == 503
    assert client.head(f"/v1/files{home}/new.txt").status_code == 404

    for node in cluster.nodes[1:]:
        cluster.restart_node(node)
    for path, (data, _) in files.items():
        assert client.get(path).content == data


def test_a_flipped_byte_is_never_served_and_the_replica_is_healed(
    cluster: Cluster, target: Target, home: str
) -> None:
    client = target.client(1)
    data = hashlib.sha256(home.encode()).digest() * 200_000  # 6.4 MB: seven 1 MiB blocks
    path = f"/v1/files{home}/rot.bin"
    created = client.post(path, content=data)
    assert created.status_code == 201
    first = created.json()["replicas"][0]
    (stored,) = stored_files(cluster, first, data)
    rotten = bytearray(stored.read_bytes())
    rotten[5 * 1024 * 1024 + 7] ^= 0xFF
    stored.write_bytes(bytes(rotten))

    for door in (1, 2):
        read = target.client(1, door).get(path)
        assert read.status_code == 200
        assert hashlib.sha256(read.content).digest() == hashlib.sha256(data).digest()
    # The read healed the bad replica from the good one, in the background.
    deadline = time.monotonic() + WAIT_TIMEOUT
    while stored.read_bytes() != data and time.monotonic() < deadline:
        # Polling another process's work.
        time.sleep(0.2)
    assert stored.read_bytes() == data
