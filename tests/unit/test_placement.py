"""Rendezvous placement: stable, even, minimal movement when nodes change, and replicas
spread across failure domains.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from callfs.discovery.base import Domain
from callfs.placement import rank, spread, spread_over

NODES = ["storage-node-0", "storage-node-1", "storage-node-2"]
PATHS = [f"/data/user{index % 37}/file-{index}.bin" for index in range(3000)]


def test_rank_orders_every_node_once_and_is_the_same_for_the_same_input() -> None:
    ranked = rank("/a/b.txt", NODES)
    assert sorted(ranked) == sorted(NODES)
    assert rank("/a/b.txt", reversed(NODES)) == ranked
    assert rank("/a/b.txt", [*NODES, NODES[0]]) == ranked


def test_rank_of_no_nodes_is_empty() -> None:
    assert rank("/a", []) == []


@given(
    path=st.text(min_size=1, max_size=40),
    nodes=st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=6, unique=True),
    data=st.data(),
)
def test_removing_a_node_only_moves_the_paths_it_held(
    path: str, nodes: list[str], data: st.DataObject
) -> None:
    removed = data.draw(st.sampled_from(nodes))
    before = rank(path, nodes)
    after = rank(path, [node for node in nodes if node != removed])
    assert after == [node for node in before if node != removed]
    if before[0] != removed:
        assert after[0] == before[0]


@given(
    path=st.text(min_size=1, max_size=40),
    nodes=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True),
    added=st.text(min_size=1, max_size=12),
)
def test_adding_a_node_only_takes_paths_for_itself(path: str, nodes: list[str], added: str) -> None:
    before = rank(path, nodes)[0]
    after = rank(path, [*nodes, added])[0]
    assert after in (before, added)


def test_paths_spread_roughly_evenly_over_three_nodes() -> None:
    counts = Counter(rank(path, NODES)[0] for path in PATHS)
    assert set(counts) == set(NODES)
    for node in NODES:
        assert 800 <= counts[node] <= 1200, counts


def test_removing_one_of_three_nodes_moves_only_its_share() -> None:
    before = {path: rank(path, NODES)[0] for path in PATHS}
    survivors = NODES[:2]
    moved = [path for path in PATHS if rank(path, survivors)[0] != before[path]]
    assert moved
    assert all(before[path] == NODES[2] for path in moved)
    assert len(moved) == sum(1 for owner in before.values() if owner == NODES[2])


# Two zones, two hosts each, two nodes a host: a0 and a1 share host h1.
DOMAINS = {
    "a0": Domain("a", "h1"),
    "a1": Domain("a", "h1"),
    "a2": Domain("a", "h2"),
    "b0": Domain("b", "h3"),
    "b1": Domain("b", "h3"),
    "b2": Domain("b", "h4"),
}


def test_spread_takes_a_new_zone_before_a_better_ranked_node_in_a_taken_one() -> None:
    assert spread(["a0", "a1", "a2", "b0", "b1"], DOMAINS, 2) == ["a0", "b0"]


def test_spread_takes_new_hosts_once_every_zone_is_taken() -> None:
    ranked = ["a0", "a1", "b0", "b1", "a2", "b2"]
    assert spread(ranked, DOMAINS, 4) == ["a0", "b0", "a2", "b2"]


def test_spread_repeats_a_host_only_when_no_new_one_is_left() -> None:
    ranked = ["a0", "a1", "b0", "b1", "a2", "b2"]
    assert spread(ranked, DOMAINS, 6) == ["a0", "b0", "a2", "b2", "a1", "b1"]


def test_fewer_domains_than_replicas_share_a_domain_rather_than_fall_short() -> None:
    one_zone = {"n0": Domain("a", "h"), "n1": Domain("a", "h"), "n2": Domain("a", "h")}
    assert spread(["n2", "n0", "n1"], one_zone, 2) == ["n2", "n0"]
    assert spread(["n2", "n0", "n1"], one_zone, 5) == ["n2", "n0", "n1"]


def test_unknown_domains_keep_the_ranking_order() -> None:
    ranked = rank("/a/b.txt", [f"node-{i}" for i in range(6)])
    assert spread(ranked, {}, 3) == ranked[:3]
    assert spread(ranked, {ranked[0]: Domain(), ranked[1]: Domain()}, 3) == ranked[:3]


def test_a_node_with_an_unknown_domain_counts_as_a_domain_of_its_own() -> None:
    assert spread(["a0", "a1", "x", "b0"], DOMAINS, 2) == ["a0", "x"]


def test_a_node_with_only_a_host_shares_its_zone_with_the_nodes_on_that_host() -> None:
    domains = {"p": Domain(host="h"), "q": Domain(host="h"), "r": Domain(host="k")}
    assert spread(["p", "q", "r"], domains, 2) == ["p", "r"]


def test_spread_moves_away_from_the_domains_already_chosen() -> None:
    ranked = ["a0", "a1", "a2", "b0", "b2"]
    assert spread(ranked, DOMAINS, 1, chosen=["a0"]) == ["b0"]
    assert spread(ranked, DOMAINS, 1, chosen=["a0", "b0"]) == ["a2"]
    assert spread(ranked, DOMAINS, 2, chosen=["a0", "b0"]) == ["a2", "b2"]
    assert "a0" not in spread(ranked, DOMAINS, 5, chosen=["a0"])


def test_spread_of_nothing_or_none_wanted_is_empty() -> None:
    assert spread([], DOMAINS, 2) == []
    assert spread(["a0", "b0"], DOMAINS, 0) == []


@given(
    path=st.text(min_size=1, max_size=40),
    zones=st.lists(st.sampled_from(["", "a", "b", "c"]), min_size=1, max_size=8),
    count=st.integers(min_value=0, max_value=17),
)
def test_spread_covers_as_many_zones_as_it_can_whatever_the_node_order(
    path: str, zones: list[str], count: int
) -> None:
    """``zones[h]`` is host ``h``'s zone; each host has two nodes."""
    nodes = [f"node-{i}" for i in range(2 * len(zones))]
    domains = {node: Domain(zones[i // 2], f"host-{i // 2}") for i, node in enumerate(nodes)}
    picked = spread(rank(path, nodes), domains, count)
    assert spread(rank(path, reversed(nodes)), dict(reversed(domains.items())), count) == picked
    assert len(picked) == min(count, len(nodes)) == len(set(picked))
    covered = {domains[node].zone or domains[node].host for node in picked}
    available = {domains[node].zone or domains[node].host for node in nodes}
    assert len(covered) == min(len(picked), len(available))


async def test_spread_over_skips_unusable_nodes_and_asks_only_about_its_picks() -> None:
    asked: list[str] = []

    async def usable(node: str) -> bool:
        asked.append(node)
        return node != "b0"

    ranked = ["a0", "a1", "b0", "b1", "a2", "b2"]
    assert await spread_over(ranked, DOMAINS, 2, usable) == ["a0", "b1"]
    assert sorted(set(asked)) == ["a0", "b0", "b1"]


def test_adding_a_node_to_a_spread_cluster_moves_only_a_minority_of_paths() -> None:
    zones = "abc"
    nodes = [f"storage-node-{i}" for i in range(11)]
    domains = {node: Domain(zones[i % 3], f"host-{i}") for i, node in enumerate(nodes)}
    paths = PATHS[:2000]
    for replicas in (2, 3):
        before = {path: set(spread(rank(path, nodes[:10]), domains, replicas)) for path in paths}
        after = {path: set(spread(rank(path, nodes), domains, replicas)) for path in paths}
        changed = sum(1 for path in paths if before[path] != after[path])
        assert 0 < changed < 0.35 * len(paths), (replicas, changed)
        # A node that is not picked changes nothing: every moved path went to the new node.
        assert all(nodes[10] in after[path] for path in paths if before[path] != after[path])
