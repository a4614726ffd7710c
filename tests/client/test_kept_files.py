"""The SDK on a ``callfs dev`` that keeps small files in its metadata store: such a file
is a ``localfs`` file naming no storage node, read and written as any other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callfs.client import Client
from tests.support.dev import TwoUsers, dev_ports, dev_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoUsers]:
    data_dir = tmp_path_factory.mktemp("callfs-dev-kept") / "data"
    with dev_server(data_dir, CALLFS_BACKEND_INLINE_MAX_BYTES="64", **dev_ports()) as (url, key):
        yield TwoUsers(url, key, key)


def test_a_small_file_is_localfs_on_no_node_and_a_big_one_on_nodes(
    server: TwoUsers, home: str
) -> None:
    with Client(server.url, server.key) as client:
        written = client.write(f"{home}/small", b"kept")
        small = client.stat(f"{home}/small")
        client.write(f"{home}/big", b"x" * 65)
        big = client.stat(f"{home}/big")

        assert (written.backend, written.instance_id, written.replicas) == ("localfs", None, ())
        assert (small.backend, small.instance_id, small.replicas) == ("localfs", None, ())
        assert (big.backend, len(big.replicas)) == ("localfs", 1)
        assert big.instance_id == big.replicas[0]
        assert client.read(f"{home}/small") == b"kept"
