"""A storage node whose volume is wiped while it is down: once it is back, the repairer
gives every file its second replica again within the cluster's repair interval.
Needs the local cluster (it kills a process and empties its volume).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Collection
from pathlib import Path

import pytest

from tests.e2e.target import WAIT_TIMEOUT, Target
from tools.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster]

VICTIM = "storage-node-2"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def holders(cluster: Cluster, blobs: Collection[bytes]) -> dict[str, set[str]]:
    """For each of ``blobs``, by SHA-256: the nodes whose volume holds an object with
    exactly those bytes (files that vanish while they are looked at, under concurrent
    traffic, hold nothing). One walk of the volumes for all of them: a volume keeps the
    folders of every object it ever held, so after a busy suite a walk is not cheap."""
    found: dict[str, set[str]] = {sha256(blob): set() for blob in blobs}
    sizes = {len(blob) for blob in blobs}
    for node in cluster.nodes:
        for folder, _, names in os.walk(cluster.root / "volumes" / node):
            for name in names:
                if name.startswith(".callfs-tmp-") or name.endswith(".sums"):
                    continue
                stored = Path(folder, name)
                try:
                    if stored.stat().st_size not in sizes:
                        continue
                    digest = sha256(stored.read_bytes())
                except FileNotFoundError:
                    continue
                if digest in found:
                    found[digest].add(node)
    return found


def test_a_wiped_volume_gets_its_replicas_back(cluster: Cluster, target: Target, home: str) -> None:
    client = target.client(1)
    files = {f"{home}/w{n}.txt": f"wiped {n} {home}".encode() for n in range(20)}
    for path, data in files.items():
        assert client.post(f"/v1/files{path}", content=data).status_code == 201
    held = holders(cluster, files.values())
    assert any(VICTIM in held[sha256(data)] for data in files.values())

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
        held = holders(cluster, files.values())
        short = [path for path, data in files.items() if len(held[sha256(data)]) < 2]
    assert short == []
    held = holders(cluster, files.values())
    for path, data in files.items():
        head = client.head(f"/v1/files{path}")
        assert set(head.headers["x-callfs-replicas"].split(",")) == held[sha256(data)]
        assert client.get(f"/v1/files{path}").content == data
