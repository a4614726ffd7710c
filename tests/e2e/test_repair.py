"""A storage node whose volume is wiped while it is down: once it is back, the repairer
gives every file its second replica again within the cluster's repair interval.
Needs the local cluster (it kills a process and empties its volume).
"""

from __future__ import annotations

import hashlib
import shutil
import time

import pytest

from tests.e2e.target import WAIT_TIMEOUT, Target
from tools.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster]

VICTIM = "storage-node-2"


def nodes_holding(cluster: Cluster, data: bytes) -> set[str]:
    """The nodes whose volume holds an object with exactly ``data`` (files that vanish
    while they are looked at, under concurrent traffic, hold nothing)."""
    digest = hashlib.sha256(data).hexdigest()
    found = set()
    for node in cluster.nodes:
        for stored in (cluster.root / "volumes" / node).rglob("*"):
            if stored.name.startswith(".callfs-tmp-") or stored.suffix == ".sums":
                continue
            try:
                held = stored.is_file() and stored.stat().st_size == len(data)
                if held and hashlib.sha256(stored.read_bytes()).hexdigest() == digest:
                    found.add(node)
            except FileNotFoundError:
                continue
    return found


def test_a_wiped_volume_gets_its_replicas_back(cluster: Cluster, target: Target, home: str) -> None:
    client = target.client(1)
    files = {f"{home}/w{n}.txt": f"wiped {n} {home}".encode() for n in range(20)}
    for path, data in files.items():
        assert client.post(f"/v1/files{path}", content=data).status_code == 201
    assert any(VICTIM in nodes_holding(cluster, data) for data in files.values())

    cluster.kill_node(VICTIM)
    try:
        volume = cluster.root / "volumes" / VICTIM
        shutil.rmtree(volume)
        volume.mkdir()
    finally:
        cluster.restart_node(VICTIM)

    deadline = time.monotonic() + WAIT_TIMEOUT
    short = list(files)
    while short and time.monotonic() < deadline:
        # Polling another process's work: the repairer runs every few seconds.
        time.sleep(0.5)
        short = [path for path, data in files.items() if len(nodes_holding(cluster, data)) < 2]
    assert short == []
    for path, data in files.items():
        head = client.head(f"/v1/files{path}")
        assert set(head.headers["x-callfs-replicas"].split(",")) == nodes_holding(cluster, data)
        assert client.get(f"/v1/files{path}").content == data
