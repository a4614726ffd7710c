"""Small files' bytes kept in the store: written with their row, gone with it.

Run against SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import pytest

from callfs.entry import Entry
from callfs.errors import AlreadyExists, EntryChanged
from callfs.metadata.base import MetadataStore
from tests.metadata.entries import directory, file


def kept(path: str, key: str) -> Entry:
    """A file whose bytes the store keeps: its entry names no node."""
    return file(path, instance_id=None, object_key=key)


async def test_bytes_created_with_their_row_are_read_back(store: MetadataStore) -> None:
    await store.create(kept("/a", "k-a"), content=b"abc")

    assert await store.read_content("k-a") == b"abc"
    assert await store.read_content("k-none") is None


async def test_a_row_that_is_not_created_keeps_no_bytes(store: MetadataStore) -> None:
    await store.create(kept("/a", "k-a"), content=b"abc")

    with pytest.raises(AlreadyExists):
        await store.create(kept("/a", "k-b"), content=b"other")

    assert await store.read_content("k-b") is None
    assert await store.read_content("k-a") == b"abc"


async def test_an_update_swaps_the_bytes_in_one_transaction(store: MetadataStore) -> None:
    first = kept("/a", "k-1")
    await store.create(first, content=b"one")
    second = first.evolve(object_key="k-2", size=3, etag="e-2")

    await store.update(second, expected=first, content=b"two")

    assert await store.read_content("k-2") == b"two"
    assert await store.read_content("k-1") is None


async def test_an_update_refused_keeps_the_old_bytes_and_adds_none(store: MetadataStore) -> None:
    first = kept("/a", "k-1")
    await store.create(first, content=b"one")
    stale = first.evolve(object_key="k-0", etag="e-0")

    with pytest.raises(EntryChanged):
        await store.update(first.evolve(object_key="k-2"), expected=stale, content=b"two")

    assert await store.read_content("k-1") == b"one"
    assert await store.read_content("k-2") is None


async def test_moving_to_a_node_drops_the_kept_bytes(store: MetadataStore) -> None:
    first = kept("/a", "k-1")
    await store.create(first, content=b"one")

    await store.update(
        first.evolve(object_key="k-2", instance_id="node-0", replicas=("node-0",)), expected=first
    )

    assert await store.read_content("k-1") is None


async def test_a_chmod_keeps_the_bytes(store: MetadataStore) -> None:
    first = kept("/a", "k-1")
    await store.create(first, content=b"one")

    await store.update(first.evolve(mode=0o600), expected=first)

    assert await store.read_content("k-1") == b"one"


async def test_deletes_drop_the_bytes_with_the_rows(store: MetadataStore) -> None:
    await store.create(directory("/d"))
    await store.create(kept("/d/a", "k-a"), content=b"a")
    await store.create(kept("/d/b", "k-b"), content=b"b")
    await store.create(kept("/c", "k-c"), content=b"c")

    await store.delete("/c")
    await store.delete_tree("/d")

    assert [await store.read_content(k) for k in ("k-a", "k-b", "k-c")] == [None, None, None]


async def test_a_move_keeps_the_bytes_and_one_replaced_loses_its_own(
    store: MetadataStore,
) -> None:
    await store.create(directory("/d"))
    await store.create(kept("/d/a", "k-a"), content=b"a")
    await store.create(kept("/b", "k-b"), content=b"b")

    await store.move("/d", "/e")
    replaced = await store.move("/e/a", "/b", replace=True)

    assert [e.object_key for e in replaced] == ["k-b"]
    assert await store.read_content("k-a") == b"a"
    assert await store.read_content("k-b") is None


async def test_deleting_a_file_on_a_node_takes_no_kept_bytes(store: MetadataStore) -> None:
    """Rows naming a node never take bytes from the store with them."""
    await store.create(kept("/a", "shared"), content=b"kept")
    await store.create(file("/n", object_key="shared"))

    await store.delete("/n")

    assert await store.read_content("shared") == b"kept"
