"""Rendezvous placement: stable, even, and minimal movement when nodes change."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from callfs.placement import rank

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
