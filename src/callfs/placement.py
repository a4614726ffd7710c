"""Where a new file goes: rendezvous (highest-random-weight) hashing over the nodes,
spread across failure domains.

Each node scores every path with a stable hash; the highest score wins. Removing
a node moves only the paths it held, and adding one takes an even share. A path's
replicas are then picked down that ranking so that they cover as many zones, then
hosts, as the nodes allow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from callfs.discovery.base import Domain


def weight(node: str, path: str) -> int:
    """The stable score of ``node`` for ``path`` (the same in every process)."""
    digest = hashlib.blake2b(f"{node}\0{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(path: str, nodes: Iterable[str]) -> list[str]:
    """``nodes`` ordered by preference for ``path``, best first (ties by name)."""
    return sorted(set(nodes), key=lambda node: (-weight(node, path), node))


def spread(
    ranked: Sequence[str],
    domains: Mapping[str, Domain],
    count: int,
    *,
    chosen: Sequence[str] = (),
) -> list[str]:
    """Up to ``count`` more nodes of ``ranked``, not in ``chosen``, covering new failure
    domains first.

    Three passes down ``ranked``, each in rank order: nodes whose zone and host are
    both new to the chosen set, then nodes whose host is new, then any. A node with
    no known zone counts as its own zone (its host's, when that is known), one with
    no known host as its own host: with no domain data this is ``ranked[:count]``.
    """
    taken = set(chosen)
    zones = {_zone(node, domains) for node in taken}
    hosts = {_host(node, domains) for node in taken}
    picked: list[str] = []
    for pass_ in range(3):
        for node in ranked:
            if len(picked) >= count:
                return picked
            if node in taken:
                continue
            zone, host = _zone(node, domains), _host(node, domains)
            if (pass_ == 0 and zone in zones) or (pass_ < 2 and host in hosts):
                continue
            picked.append(node)
            taken.add(node)
            zones.add(zone)
            hosts.add(host)
    return picked


async def spread_over(
    ranked: Sequence[str],
    domains: Mapping[str, Domain],
    count: int,
    usable: Callable[[str], Awaitable[bool]],
    *,
    chosen: Sequence[str] = (),
) -> list[str]:
    """:func:`spread` over the nodes of ``ranked`` for which ``usable`` is true, asking
    ``usable`` only about nodes the spread would pick.

    A node that is not picked never changes what the passes pick, so dropping the
    unusable picks and spreading again ends with the spread over the usable nodes.
    """
    candidates = list(ranked)
    while True:
        picked = spread(candidates, domains, count, chosen=chosen)
        unusable = {node for node in picked if not await usable(node)}
        if not unusable:
            return picked
        candidates = [node for node in candidates if node not in unusable]


def _zone(node: str, domains: Mapping[str, Domain]) -> tuple[str, str]:
    domain = domains.get(node, _UNKNOWN)
    if domain.zone:
        return ("zone", domain.zone)
    # Nodes on one host share its zone, whatever it is.
    return ("host", domain.host) if domain.host else ("node", node)


def _host(node: str, domains: Mapping[str, Domain]) -> tuple[str, str]:
    host = domains.get(node, _UNKNOWN).host
    return ("host", host) if host else ("node", node)


_UNKNOWN = Domain()
