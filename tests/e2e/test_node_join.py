"""A fourth storage node joins the running cluster under mixed read and write load:
the gateways hear of it from the peers file, the repairer moves onto it the files
whose placement now names it, and not one request fails. Needs the local cluster
(it starts a process), and runs after every other test (the cluster keeps four nodes).
"""

from __future__ import annotations

import time

import pytest

from callfs.placement import rank
from tests.e2e.target import WAIT_TIMEOUT, Target
from tests.e2e.test_repair import holders, sha256
from tests.e2e.test_rolling_restart import Load
from tools.cluster import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster, pytest.mark.grows_cluster]

NEWCOMER = "storage-node-3"
FILES = 40
REPLICAS = 2


def test_a_joining_node_takes_its_share_without_a_failed_request(
    cluster: Cluster, target: Target, home: str
) -> None:
    client = target.client(1)
    files = {f"{home}/j{n}.bin": f"joins {n} {home}\n".encode() * 64 for n in range(FILES)}
    for path, data in files.items():
        assert client.post(f"/v1/files{path}", content=data).status_code == 201
    held = holders(cluster, files.values())
    assert not any(NEWCOMER in held[sha256(data)] for data in files.values())

    with Load(target, home) as load:
        before = load.requests
        cluster.add_node(NEWCOMER)
        # Placement ranks the full path (the API path less its /v1/files prefix).
        wanted = {path: set(rank(path, cluster.nodes)[:REPLICAS]) for path in files}
        moving = [path for path, nodes in wanted.items() if NEWCOMER in nodes]

        deadline = time.monotonic() + WAIT_TIMEOUT
        pending = list(files)
        while pending and time.monotonic() < deadline:
            # Polling another process's work: the repairer runs every few seconds.
            time.sleep(0.5)
            held = holders(cluster, files.values())
            pending = [p for p, data in files.items() if held[sha256(data)] != wanted[p]]
        during = load.requests - before

    assert pending == [], f"not where their placement names: {pending}"
    assert FILES // 5 <= len(moving) <= FILES * 4 // 5
    assert load.failures == [], "\n".join(load.failures)
    assert during > 20
    for path, data in files.items():
        head = client.head(f"/v1/files{path}")
        assert set(head.headers["x-callfs-replicas"].split(",")) == wanted[path]
        assert client.get(f"/v1/files{path}").content == data
