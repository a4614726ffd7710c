"""What the replication tests look at: which nodes hold a file's bytes, and a clock."""

from __future__ import annotations

import hashlib

from tests.support.harness import Cluster


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def content(seed: int, size: int) -> bytes:
    """``size`` bytes that differ for every seed."""
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def holding(cluster: Cluster, data: bytes) -> list[str]:
    """The nodes whose volume holds an object with exactly ``data`` (sorted)."""
    digest = hashlib.sha256(data).hexdigest()
    return sorted(
        {
            name
            for name, node in cluster.nodes.items()
            for stored in node.root.rglob("*")
            if stored.is_file()
            and not stored.name.startswith(".callfs-tmp-")
            and stored.suffix != ".sums"
            and hashlib.sha256(stored.read_bytes()).hexdigest() == digest
        }
    )


async def replicas_of(cluster: Cluster, url: str) -> list[str]:
    """The replicas a HEAD through the first gateway names."""
    head = await cluster.client("alice").head(url)
    return head.headers["x-callfs-replicas"].split(",")
