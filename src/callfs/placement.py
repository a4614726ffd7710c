"""Where a new file goes: rendezvous (highest-random-weight) hashing over the nodes.

Each node scores every path with a stable hash; the highest score wins. Removing
a node moves only the paths it held, and adding one takes an even share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(node: str, path: str) -> int:
    """The stable score of ``node`` for ``path`` (the same in every process)."""
    digest = hashlib.blake2b(f"{node}\0{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(path: str, nodes: Iterable[str]) -> list[str]:
    """``nodes`` ordered by preference for ``path``, best first (ties by name)."""
    return sorted(set(nodes), key=lambda node: (-weight(node, path), node))
