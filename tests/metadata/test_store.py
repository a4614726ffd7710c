"""The metadata-store contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from callfs.backends.base import ObjectRef
from callfs.entry import Entry
from callfs.errors import (
    AlreadyExists,
    BadRequest,
    DirectoryNotEmpty,
    EntryChanged,
    IsADirectory,
    NotADirectory,
    NotFound,
)
from callfs.metadata import postgres, sqlite
from callfs.metadata.base import MetadataStore
from tests.metadata.conftest import StoreTarget
from tests.metadata.entries import T0, directory, file

# Names that sort around "/" (0x2F): " " "-" "." before it, "0" after it.
TRICKY_NAMES = ["a", "a b", "a-b", "a.b", "a0", "ab", "aé", "b", "Z", "日本", "🙂"]


def paths_of(entries: Sequence[Entry]) -> list[str]:
    return [e.path for e in entries]


async def build_tree(store: MetadataStore) -> None:
    """/d with a subtree under /d/a and siblings whose names share its prefix."""
    await store.create(directory("/d"))
    for name in TRICKY_NAMES:
        await store.create(directory(f"/d/{name}") if name == "a" else file(f"/d/{name}"))
    await store.create(directory("/d/a/x"))
    await store.create(file("/d/a/x/deep"))
    await store.create(file("/d/a/y"))


# --- open, root, migrations -----------------------------------------------------------


async def test_open_creates_root_as_sticky_world_writable_directory(store: MetadataStore) -> None:
    root = await store.get("/")
    assert root is not None
    assert (root.type, root.mode, root.owner, root.group) == ("directory", 0o1777, "root", "root")


async def test_ping_answers_when_open(store: MetadataStore) -> None:
    await store.ping()
    assert await store.get("/") is not None


async def test_reopening_applies_no_migration_twice_and_keeps_data(
    store: MetadataStore, store_target: StoreTarget
) -> None:
    await store.create(file("/kept"))
    before = await store_target.migration_versions()
    again = store_target.build()
    await again.open()
    try:
        assert await again.get("/kept") == file("/kept")
    finally:
        await again.close()
    assert await store_target.migration_versions() == before
    assert before and before[0] == 1


async def test_replicas_opening_together_migrate_once(store_target: StoreTarget) -> None:
    replicas = [store_target.build() for _ in range(4)]
    try:
        await asyncio.gather(*(replica.open() for replica in replicas))
        roots = [await replica.get("/") for replica in replicas]
    finally:
        for replica in replicas:
            await replica.close()
    assert all(root is not None and root.mode == 0o1777 for root in roots)
    versions = await store_target.migration_versions()
    assert versions == sorted(set(versions))


# --- create and get -------------------------------------------------------------------


async def test_create_then_get_round_trips_every_field(store: MetadataStore) -> None:
    entry = file(
        "/日本/ファイル 1.txt",
        size=2**40,
        mode=0o4750,
        owner="bob",
        group="ops",
        mtime=datetime(2031, 12, 31, 23, 59, 59, tzinfo=UTC),
        ctime=datetime(1999, 1, 1, 0, 0, 1, tzinfo=UTC),
        etag='"abc"',
        backend="s3",
        instance_id=None,
        object_key="objects/1",
    )
    await store.create(entry, [directory("/日本")])
    assert await store.get(entry.path) == entry


async def test_times_come_back_as_the_same_instant_in_utc(store: MetadataStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    await store.create(file("/f", mtime=datetime(2026, 5, 1, 14, 0, 0, tzinfo=plus_two)))
    found = await store.get("/f")
    assert found is not None
    assert found.mtime == datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert found.mtime.utcoffset() == timedelta(0)


async def test_get_of_missing_path_is_none(store: MetadataStore) -> None:
    assert await store.get("/nope") is None


async def test_create_inserts_missing_parents(store: MetadataStore) -> None:
    parents = [directory("/a"), directory("/a/b", owner="bob")]
    await store.create(file("/a/b/c"), parents)
    found = await store.get_many(["/a", "/a/b", "/a/b/c"])
    assert found == {"/a": parents[0], "/a/b": parents[1], "/a/b/c": file("/a/b/c")}


async def test_create_keeps_parents_that_already_exist(store: MetadataStore) -> None:
    await store.create(directory("/a", owner="carol"))
    await store.create(file("/a/f"), [directory("/a", owner="bob")])
    existing = await store.get("/a")
    assert existing is not None and existing.owner == "carol"


async def test_create_existing_path_raises_already_exists(store: MetadataStore) -> None:
    await store.create(file("/f"))
    with pytest.raises(AlreadyExists):
        await store.create(file("/f", size=9))
    found = await store.get("/f")
    assert found is not None and found.size == 3


async def test_create_below_a_file_raises_not_a_directory(store: MetadataStore) -> None:
    await store.create(file("/f"))
    with pytest.raises(NotADirectory):
        await store.create(file("/f/g"))


async def test_create_with_a_parent_below_a_file_rolls_back(store: MetadataStore) -> None:
    await store.create(file("/f"))
    with pytest.raises(NotADirectory):
        await store.create(file("/f/sub/g"), [directory("/f/sub")])
    assert await store.get("/f/sub") is None
    assert await store.get("/f/sub/g") is None


async def test_create_whose_parent_is_missing_raises_not_found(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.create(file("/missing/f"))
    assert await store.get("/missing/f") is None


async def test_concurrent_creates_of_one_path_let_exactly_one_win(store: MetadataStore) -> None:
    attempts = [store.create(file("/race/f", size=n), [directory("/race")]) for n in range(20)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(result is None for result in results) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if r is not None)
    winner = results.index(None)
    assert await store.get("/race/f") == file("/race/f", size=winner)


async def test_get_many_returns_only_the_paths_that_exist(store: MetadataStore) -> None:
    await store.create(file("/x"))
    found = await store.get_many(["/", "/x", "/y", "/x"])
    assert sorted(found) == ["/", "/x"]
    assert await store.get_many([]) == {}


async def test_get_many_answers_for_many_paths_at_once(store: MetadataStore) -> None:
    await store.create(directory("/many"))
    for n in range(30):
        await store.create(file(f"/many/{n:04d}"))
    wanted = [f"/many/{n:04d}" for n in range(0, 1200, 1)]
    found = await store.get_many(wanted)
    assert sorted(found) == [f"/many/{n:04d}" for n in range(30)]


# --- listings -------------------------------------------------------------------------


async def test_list_children_is_sorted_bytewise(store: MetadataStore) -> None:
    await build_tree(store)
    children = await store.list_children("/d")
    expected = sorted(f"/d/{name}" for name in TRICKY_NAMES)
    assert paths_of(children) == expected
    assert expected.index("/d/Z") == 0 and expected[-1] == "/d/🙂"


async def test_list_children_of_root_lists_top_level_only(store: MetadataStore) -> None:
    await build_tree(store)
    await store.create(file("/top"))
    assert paths_of(await store.list_children("/")) == ["/d", "/top"]


async def test_list_children_pages_by_after_and_limit(store: MetadataStore) -> None:
    await build_tree(store)
    seen: list[str] = []
    after: str | None = None
    while page := await store.list_children("/d", limit=3, after=after):
        assert len(page) <= 3
        seen += paths_of(page)
        after = page[-1].path
    assert seen == sorted(f"/d/{name}" for name in TRICKY_NAMES)


async def test_count_children_counts_what_list_children_returns(store: MetadataStore) -> None:
    await build_tree(store)
    assert await store.count_children("/d") == len(TRICKY_NAMES)
    assert await store.count_children("/d", limit=4) == 4
    third = sorted(f"/d/{name}" for name in TRICKY_NAMES)[2]
    assert await store.count_children("/d", after=third) == len(TRICKY_NAMES) - 3
    assert await store.count_children("/d/a") == 2
    assert await store.count_children("/nowhere") == 0


async def test_children_are_read_and_counted_through_the_parent_index(
    store: MetadataStore, store_target: StoreTarget
) -> None:
    await build_tree(store)
    module = sqlite if store_target.kind == "sqlite" else postgres
    for query in (module.CHILDREN, module.COUNT_CHILDREN):
        plan = await store_target.plan(query, "/d", "", 100)
        assert "entries_parent_idx" in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
        assert "pkey" not in plan and "sqlite_autoindex" not in plan, plan


async def test_list_tree_of_depth_zero_is_list_children(store: MetadataStore) -> None:
    await build_tree(store)
    third = sorted(f"/d/{name}" for name in TRICKY_NAMES)[2]
    for limit, after in ((None, None), (4, None), (4, third)):
        assert await store.list_tree("/d", max_depth=0, limit=limit, after=after) == (
            await store.list_children("/d", limit=limit, after=after)
        )


async def test_encoded_children_are_each_entrys_metadata_object(store: MetadataStore) -> None:
    """The rows a listing encodes, built by the store: the same objects ``to_json``
    makes of the entries, for every kind of row (directory, replicated file, S3 file,
    a file an older version left without trusted replicas), page by page."""
    await build_tree(store)
    later = T0 + timedelta(days=400, seconds=7)
    await store.create(replicated("/d/r", THREE, mode=0o4750, mtime=later, size=10))
    await store.create(file("/d/s3", backend="s3", instance_id=None, object_key="k", size=0))
    await store.create(replicated("/d/old", ("node-0", "node-1")))
    await store.update(file("/d/old", instance_id="node-2", replicas=("node-0", "node-1")))
    third = sorted(paths_of(await store.list_children("/d")))[2]
    for limit, after in ((None, None), (4, None), (4, third), (None, "/d/zzz")):
        entries = await store.list_children("/d", limit=limit, after=after)
        encoded = await store.list_children_encoded("/d", limit=limit, after=after)
        assert [path for path, _ in encoded] == paths_of(entries)
        assert [orjson.loads(body) for _, body in encoded] == [e.to_json() for e in entries]
    items = {path: orjson.loads(body) for path, body in await store.list_children_encoded("/d")}
    assert items["/d/r"]["replicas"] == list(THREE) and items["/d/r"]["mode"] == "4750"
    assert items["/d/r"]["mtime"] == "2027-04-05T12:30:52Z"
    assert items["/d/old"]["replicas"] == ["node-2"]
    assert items["/d/s3"]["instance_id"] is None and items["/d/s3"]["replicas"] == []
    assert items["/d/a"]["type"] == "directory" and "etag" not in items["/d/a"]


async def test_list_children_of_a_file_or_missing_path_is_empty(store: MetadataStore) -> None:
    await build_tree(store)
    assert await store.list_children("/d/b") == []
    assert await store.list_children("/nowhere") == []


async def test_list_tree_holds_every_descendant_sorted_by_path(store: MetadataStore) -> None:
    await build_tree(store)
    tree = paths_of(await store.list_tree("/d"))
    expected = sorted([f"/d/{name}" for name in TRICKY_NAMES] + ["/d/a/x", "/d/a/x/deep", "/d/a/y"])
    assert tree == expected
    # "/d/a b" and "/d/a-b" sort before "/d/a/x": bytewise, not depth-first.
    assert tree.index("/d/a-b") < tree.index("/d/a/x") < tree.index("/d/a0")


async def test_list_tree_stops_at_max_depth(store: MetadataStore) -> None:
    await build_tree(store)
    children = paths_of(await store.list_tree("/d", max_depth=0))
    assert children == sorted(f"/d/{name}" for name in TRICKY_NAMES)
    two = paths_of(await store.list_tree("/d", max_depth=1))
    assert "/d/a/x" in two and "/d/a/y" in two and "/d/a/x/deep" not in two
    assert paths_of(await store.list_tree("/", max_depth=0)) == ["/d"]
    everything = paths_of(await store.list_tree("/"))
    assert everything[0] == "/d" and "/d/a/x/deep" in everything and "/" not in everything


async def test_list_tree_leaves_out_siblings_sharing_a_prefix(store: MetadataStore) -> None:
    await build_tree(store)
    assert paths_of(await store.list_tree("/d/a")) == ["/d/a/x", "/d/a/x/deep", "/d/a/y"]


async def test_list_tree_pages_by_after_and_limit(store: MetadataStore) -> None:
    await build_tree(store)
    full = paths_of(await store.list_tree("/d", max_depth=1))
    seen: list[str] = []
    after: str | None = None
    while page := await store.list_tree("/d", max_depth=1, limit=4, after=after):
        seen += paths_of(page)
        after = page[-1].path
    assert seen == full


async def test_list_tree_with_negative_depth_is_bad_request(store: MetadataStore) -> None:
    with pytest.raises(BadRequest):
        await store.list_tree("/", max_depth=-1)


async def test_has_children_tells_empty_from_full(store: MetadataStore) -> None:
    await store.create(directory("/empty"))
    await store.create(file("/full/f"), [directory("/full")])
    assert await store.has_children("/full")
    assert not await store.has_children("/empty")
    assert await store.has_children("/")


# --- update ---------------------------------------------------------------------------


async def test_update_overwrites_the_row(store: MetadataStore) -> None:
    await store.create(file("/f"))
    changed = file("/f", size=10, mode=0o600, owner="bob", etag="etag-2", mtime=T0 + timedelta(1))
    await store.update(changed)
    assert await store.get("/f") == changed


async def test_update_of_missing_path_raises_not_found(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.update(file("/ghost"))
    with pytest.raises(NotFound):
        await store.update(file("/ghost"), expected=file("/ghost"))


async def test_update_of_a_row_holding_another_object_changes_nothing(
    store: MetadataStore,
) -> None:
    """The row was replaced after the caller read it: its object is not the one expected."""
    seen = file("/f", etag="v1", object_key="object-1")
    await store.create(seen)
    await store.update(file("/f", etag="v1", object_key="object-2", size=5), expected=seen)
    with pytest.raises(EntryChanged):
        await store.update(file("/f", etag="v3", object_key="object-3", size=1), expected=seen)
    found = await store.get("/f")
    assert found is not None and (found.object_key, found.size) == ("object-2", 5)


async def test_update_of_a_row_with_another_etag_changes_nothing(store: MetadataStore) -> None:
    await store.create(file("/f", etag="v1"))
    with pytest.raises(EntryChanged):
        await store.update(file("/f", etag="v3", size=1), expected=file("/f", etag="v2"))
    found = await store.get("/f")
    assert found is not None and (found.etag, found.size) == ("v1", 3)


async def test_update_of_the_row_as_read_succeeds(store: MetadataStore) -> None:
    seen = file("/f", etag="v1")
    await store.create(seen)
    await store.update(file("/f", etag="v2", object_key="object-2"), expected=seen)
    found = await store.get("/f")
    assert found is not None and (found.etag, found.object_key) == ("v2", "object-2")


async def test_conditional_update_of_a_directory_matches_its_empty_object(
    store: MetadataStore,
) -> None:
    seen = directory("/d")
    await store.create(seen)
    await store.update(seen.evolve(mode=0o700), expected=seen)
    found = await store.get("/d")
    assert found is not None and found.mode == 0o700


async def test_concurrent_conditional_updates_let_one_win(store: MetadataStore) -> None:
    seen = file("/f", etag="v0")
    await store.create(seen)
    attempts = [
        store.update(file("/f", etag=f"w{n}", object_key=f"object-{n}"), expected=seen)
        for n in range(10)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(result is None for result in results) == 1
    assert all(isinstance(r, EntryChanged) for r in results if r is not None)


# --- entry identity -------------------------------------------------------------------


async def test_every_new_entry_gets_its_own_entry_id(store: MetadataStore) -> None:
    first, second = file("/f"), file("/f")
    assert re.fullmatch("[0-9a-f]{32}", first.entry_id)
    assert first.entry_id != second.entry_id
    await store.create(first, [directory("/d")])
    found = await store.get("/f")
    assert found is not None and found.entry_id == first.entry_id
    await store.delete("/f")
    await store.create(second)
    again = await store.get("/f")
    assert again is not None and again.entry_id == second.entry_id
    parent = await store.get("/d")
    assert parent is not None and parent.entry_id not in {first.entry_id, second.entry_id}


async def test_update_keeps_the_entry_id(store: MetadataStore) -> None:
    created = file("/f")
    await store.create(created)
    await store.update(created.evolve(size=10, etag="etag-2", object_key="object-2"))
    # An update rewrites what the entry says, never which entry it is.
    await store.update(
        file("/f", mode=0o600), expected=file("/f", etag="etag-2", object_key="object-2")
    )
    found = await store.get("/f")
    assert found is not None and (found.mode, found.entry_id) == (0o600, created.entry_id)


async def test_move_keeps_the_entry_ids_of_the_whole_subtree(store: MetadataStore) -> None:
    await build_tree(store)
    before = {e.path: e.entry_id for e in await store.list_tree("/d")}
    target = file("/e/moved", size=9)
    await store.create(target, [directory("/e")])
    replaced = await store.move("/d/a/y", "/e/moved", replace=True)
    assert [e.entry_id for e in replaced] == [target.entry_id]
    await store.move("/d/a", "/e/a")
    after = {e.path: e.entry_id for e in await store.list_tree("/e")}
    assert len(set(before.values())) == len(before)
    assert after == {
        "/e/a": before["/d/a"],
        "/e/a/x": before["/d/a/x"],
        "/e/a/x/deep": before["/d/a/x/deep"],
        "/e/moved": before["/d/a/y"],
    }
    removed = await store.delete_tree("/e/a")
    assert [ref.key for ref in removed] == ["key-d-a-x-deep"]


# --- replicas -------------------------------------------------------------------------

THREE = ("node-2", "node-0", "node-1")


def replicated(path: str, holders: Sequence[str] = THREE, **fields: object) -> Entry:
    """A file on ``holders``, in that placement order."""
    return file(path, instance_id=holders[0], replicas=tuple(holders), **fields)


async def test_replicas_round_trip_in_placement_order(store: MetadataStore) -> None:
    entry = replicated("/d/f")
    await store.create(entry, [directory("/d")])
    found = await store.get("/d/f")
    assert found == entry
    assert found is not None and found.replicas == THREE and found.holders == THREE
    assert (await store.get_many(["/d/f"]))["/d/f"].replicas == THREE
    assert [e.replicas for e in await store.list_children("/d")] == [THREE]
    assert [e.replicas for e in await store.list_tree("/d")] == [THREE]
    parent = await store.get("/d")
    assert parent is not None and (parent.replicas, parent.holders) == ((), ())


async def test_update_rewrites_the_replicas(store: MetadataStore) -> None:
    created = replicated("/f")
    await store.create(created)
    moved_on = replicated("/f", ("node-3", "node-1"), etag="etag-2", object_key="object-2")
    await store.update(moved_on, expected=created)
    found = await store.get("/f")
    assert found is not None and found.replicas == ("node-3", "node-1")
    # To S3: the file is on no node any more.
    await store.update(file("/f", backend="s3", instance_id=None, object_key="objects/f"))
    found = await store.get("/f")
    assert found is not None and (found.replicas, found.holders) == ((), ())


async def test_move_and_delete_keep_the_replicas(store: MetadataStore) -> None:
    await store.create(directory("/d"))
    await store.create(replicated("/d/a", ("node-0", "node-1")))
    await store.create(replicated("/d/b", ("node-1", "node-2")))
    await store.create(replicated("/target", ("node-2", "node-0")))
    replaced = await store.move("/d/a", "/target", replace=True)
    assert [e.replicas for e in replaced] == [("node-2", "node-0")]
    moved = await store.get("/target")
    assert moved is not None and moved.replicas == ("node-0", "node-1")
    await store.move("/d", "/e")
    below = await store.get("/e/b")
    assert below is not None and below.replicas == ("node-1", "node-2")
    assert (await store.delete("/target")).replicas == ("node-0", "node-1")
    removed = await store.delete_tree("/e")
    assert [ref.replicas for ref in removed] == [("node-1", "node-2")]


async def test_a_row_without_replicas_is_held_by_its_instance_id(store: MetadataStore) -> None:
    """As rows written before replicas were recorded, or by an older version, read."""
    await store.create(file("/f", instance_id="node-1", replicas=()))
    found = await store.get("/f")
    assert found is not None and (found.replicas, found.holders) == ((), ("node-1",))


async def test_replicas_not_led_by_the_instance_id_are_not_trusted(store: MetadataStore) -> None:
    """An older version moved the object to another node and left the replicas behind."""
    await store.create(replicated("/f", ("node-0", "node-1")))
    await store.update(file("/f", instance_id="node-2", replicas=("node-0", "node-1")))
    found = await store.get("/f")
    assert found is not None and (found.replicas, found.holders) == ((), ("node-2",))


# --- set_replicas ---------------------------------------------------------------------


def without_placement(entry: Entry | None) -> Entry | None:
    """``entry`` with the two fields set_replicas changes blanked out."""
    return None if entry is None else entry.evolve(instance_id=None, replicas=())


async def test_set_replicas_records_the_holders_and_nothing_else(store: MetadataStore) -> None:
    created = replicated(
        "/d/f",
        ("node-0",),
        object_key="object-1",
        size=7,
        mode=0o640,
        etag="etag-9",
        mtime=T0 + timedelta(days=1),
    )
    await store.create(created, [directory("/d")])
    before, parent = await store.get("/d/f"), await store.get("/d")
    assert before == created

    assert await store.set_replicas("/d/f", "object-1", THREE) is True
    after = await store.get("/d/f")
    assert after is not None
    assert (after.instance_id, after.replicas, after.holders) == ("node-2", THREE, THREE)
    assert without_placement(after) == without_placement(before)
    assert after.entry_id == created.entry_id
    assert await store.get("/d") == parent
    # Shrinking to one node, from any sequence.
    assert await store.set_replicas("/d/f", "object-1", ["node-1"]) is True
    again = await store.get("/d/f")
    assert again is not None and (again.instance_id, again.replicas) == ("node-1", ("node-1",))
    assert without_placement(again) == without_placement(before)
    assert again.entry_id == created.entry_id


async def test_set_replicas_repairs_a_row_whose_replicas_were_not_trusted(
    store: MetadataStore,
) -> None:
    """A row an older version left with replicas not led by its instance_id."""
    await store.create(replicated("/f", ("node-0", "node-1"), object_key="object-1"))
    await store.update(
        file("/f", instance_id="node-2", replicas=("node-0", "node-1"), object_key="object-1")
    )
    assert await store.set_replicas("/f", "object-1", ("node-2", "node-0")) is True
    found = await store.get("/f")
    assert found is not None and found.replicas == found.holders == ("node-2", "node-0")


async def test_set_replicas_of_a_row_holding_another_object_changes_nothing(
    store: MetadataStore,
) -> None:
    await store.create(replicated("/f", ("node-0",), object_key="object-2"))
    before = await store.get("/f")
    assert await store.set_replicas("/f", "object-1", THREE) is False
    assert await store.get("/f") == before


async def test_set_replicas_of_a_missing_path_or_a_directory_changes_nothing(
    store: MetadataStore,
) -> None:
    await store.create(file("/gone", object_key="object-1"))
    await store.delete("/gone")
    assert await store.set_replicas("/gone", "object-1", THREE) is False
    assert await store.get("/gone") is None
    await store.create(directory("/d"))
    before = await store.get("/d")
    assert await store.set_replicas("/d", "", THREE) is False
    assert await store.set_replicas("/d", "object-1", THREE) is False
    after = await store.get("/d")
    assert after == before
    assert after is not None and (after.instance_id, after.replicas) == (None, ())


async def test_set_replicas_to_no_node_is_bad_request(store: MetadataStore) -> None:
    await store.create(replicated("/f", ("node-0", "node-1"), object_key="object-1"))
    before = await store.get("/f")
    with pytest.raises(BadRequest):
        await store.set_replicas("/f", "object-1", ())
    with pytest.raises(BadRequest):
        await store.set_replicas("/ghost", "object-1", [])
    assert await store.get("/f") == before


async def rows_on_many_nodes(store: MetadataStore) -> None:
    await store.create(directory("/d"))
    await store.create(replicated("/d/1", ("node-0", "node-1", "node-2"), object_key="k1"))
    await store.create(replicated("/d/2", ("node-1",), object_key="k2"))
    # Written before replicas were recorded: on its instance_id alone.
    await store.create(file("/d/3", instance_id="node-3", replicas=(), object_key="k3"))
    await store.create(file("/d/4", backend="s3", instance_id=None, object_key="k4"))
    # Ids that contain another node's id.
    await store.create(replicated("/d/5", ("node-10", "xnode-1"), object_key="k5"))


async def test_object_keys_counts_a_key_on_every_replica_node(store: MetadataStore) -> None:
    await rows_on_many_nodes(store)
    assert await store.object_keys("localfs", "node-0") == {"k1"}
    assert await store.object_keys("localfs", "node-1") == {"k1", "k2"}
    assert await store.object_keys("localfs", "node-2") == {"k1"}
    assert await store.object_keys("localfs", "node-3") == {"k3"}
    assert await store.object_keys("localfs", "node-10") == {"k5"}
    assert await store.object_keys("localfs", "xnode-1") == {"k5"}
    assert await store.object_keys("localfs", "node") == set()
    assert await store.object_keys("localfs", "node-9") == set()
    assert await store.object_keys("s3", None) == {"k4"}
    assert await store.object_keys("s3", "node-1") == set()


async def test_referenced_keys_counts_a_key_on_every_replica_node(store: MetadataStore) -> None:
    await rows_on_many_nodes(store)
    asked = ["k1", "k2", "k3", "k4", "k5", "gone"]
    assert await store.referenced_keys("localfs", "node-0", asked) == {"k1"}
    assert await store.referenced_keys("localfs", "node-1", asked) == {"k1", "k2"}
    assert await store.referenced_keys("localfs", "node-2", asked) == {"k1"}
    assert await store.referenced_keys("localfs", "node-3", asked) == {"k3"}
    assert await store.referenced_keys("localfs", "node-10", asked) == {"k5"}
    assert await store.referenced_keys("localfs", "node-9", asked) == set()
    assert await store.referenced_keys("s3", None, asked) == {"k4"}


# --- delete ---------------------------------------------------------------------------


async def test_delete_removes_a_file_and_returns_it(store: MetadataStore) -> None:
    await store.create(file("/f"))
    assert await store.delete("/f") == file("/f")
    assert await store.get("/f") is None


async def test_delete_removes_an_empty_directory(store: MetadataStore) -> None:
    await store.create(directory("/e"))
    assert (await store.delete("/e")).is_dir
    assert await store.get("/e") is None


async def test_delete_of_non_empty_directory_raises_directory_not_empty(
    store: MetadataStore,
) -> None:
    await store.create(file("/d/f"), [directory("/d")])
    with pytest.raises(DirectoryNotEmpty):
        await store.delete("/d")
    assert await store.get("/d") is not None


async def test_delete_of_missing_path_raises_not_found(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.delete("/nope")


async def test_root_cannot_be_deleted(store: MetadataStore) -> None:
    with pytest.raises(BadRequest):
        await store.delete("/")
    with pytest.raises(BadRequest):
        await store.delete_tree("/")
    assert await store.get("/") is not None


async def test_delete_tree_removes_the_subtree_only(store: MetadataStore) -> None:
    await build_tree(store)
    await store.create(file("/d/a/s3", backend="s3", instance_id=None, object_key="objects/s3"))
    old = file(
        "/d/a/old", instance_id="node-2", object_key="key-old", replicas=("node-2", "node-0")
    )
    await store.create(old)
    removed = await store.delete_tree("/d/a")
    # The objects of its files, in path order, each on the nodes holding it; directories
    # have none.
    assert removed == [
        ObjectRef("localfs", "key-old", ("node-2", "node-0")),
        ObjectRef("s3", "objects/s3"),
        ObjectRef("localfs", "key-d-a-x-deep", ("node-0",)),
        ObjectRef("localfs", "key-d-a-y", ("node-0",)),
    ]
    assert await store.get("/d/a/x/deep") is None
    left = paths_of(await store.list_tree("/d"))
    assert left == sorted(f"/d/{name}" for name in TRICKY_NAMES if name != "a")


async def test_list_tree_can_list_directories_alone(store: MetadataStore) -> None:
    await build_tree(store)
    assert paths_of(await store.list_tree("/d", directories_only=True)) == ["/d/a", "/d/a/x"]
    # Paged: limit and after count directories only.
    first = await store.list_tree("/d", directories_only=True, limit=1)
    assert paths_of(first) == ["/d/a"]
    rest = await store.list_tree("/d", directories_only=True, after="/d/a")
    assert paths_of(rest) == ["/d/a/x"]
    assert paths_of(await store.list_tree("/d", directories_only=True, max_depth=0)) == ["/d/a"]


async def test_delete_tree_of_missing_path_removes_nothing(store: MetadataStore) -> None:
    assert await store.delete_tree("/nope") == []


# --- move -----------------------------------------------------------------------------


async def test_move_rewrites_the_whole_subtree(store: MetadataStore) -> None:
    await build_tree(store)
    await store.create(directory("/e"))
    assert await store.move("/d/a", "/e/moved") == []
    assert paths_of(await store.list_tree("/e")) == [
        "/e/moved",
        "/e/moved/x",
        "/e/moved/x/deep",
        "/e/moved/y",
    ]
    assert paths_of(await store.list_children("/e/moved/x")) == ["/e/moved/x/deep"]
    assert await store.get("/e/moved/x/deep") == file(
        "/e/moved/x/deep", object_key="key-d-a-x-deep"
    )
    assert await store.list_tree("/d/a") == []
    assert "/d/a" not in paths_of(await store.list_children("/d"))
    # The prefix siblings stay put.
    assert await store.get("/d/a-b") is not None and await store.get("/d/ab") is not None


async def test_move_renames_a_file_in_place(store: MetadataStore) -> None:
    await store.create(file("/old"))
    await store.move("/old", "/new")
    assert await store.get("/old") is None
    moved = await store.get("/new")
    assert moved == file("/old").evolve(path="/new")
    assert moved is not None and moved.name == "new"


async def test_move_onto_itself_changes_nothing(store: MetadataStore) -> None:
    await store.create(file("/f"))
    assert await store.move("/f", "/f", replace=True) == []
    assert await store.get("/f") == file("/f")


async def test_move_of_missing_source_raises_not_found(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        await store.move("/nope", "/other")


async def test_move_onto_existing_path_without_replace_raises_already_exists(
    store: MetadataStore,
) -> None:
    await store.create(file("/a"))
    await store.create(file("/b"))
    with pytest.raises(AlreadyExists):
        await store.move("/a", "/b")
    assert await store.get("/a") is not None


async def test_move_with_replace_removes_and_returns_the_replaced_file(
    store: MetadataStore,
) -> None:
    await store.create(file("/a", size=1))
    await store.create(file("/b", size=2))
    assert await store.move("/a", "/b", replace=True) == [file("/b", size=2)]
    assert await store.get("/a") is None
    assert await store.get("/b") == file("/a", size=1).evolve(path="/b")


async def test_move_of_directory_replaces_an_empty_directory(store: MetadataStore) -> None:
    await store.create(file("/src/f"), [directory("/src")])
    await store.create(directory("/dst", owner="bob"))
    replaced = await store.move("/src", "/dst", replace=True)
    assert replaced == [directory("/dst", owner="bob")]
    assert paths_of(await store.list_tree("/dst")) == ["/dst/f"]
    moved = await store.get("/dst")
    assert moved is not None and moved.owner == "alice"


async def test_move_onto_non_empty_directory_raises_directory_not_empty(
    store: MetadataStore,
) -> None:
    await store.create(file("/src/f"), [directory("/src")])
    await store.create(file("/dst/g"), [directory("/dst")])
    with pytest.raises(DirectoryNotEmpty):
        await store.move("/src", "/dst", replace=True)
    assert paths_of(await store.list_tree("/src")) == ["/src/f"]
    assert paths_of(await store.list_tree("/dst")) == ["/dst/g"]


async def test_move_between_file_and_directory_is_refused(store: MetadataStore) -> None:
    await store.create(file("/f"))
    await store.create(directory("/d"))
    with pytest.raises(IsADirectory):
        await store.move("/f", "/d", replace=True)
    with pytest.raises(NotADirectory):
        await store.move("/d", "/f", replace=True)
    assert await store.get("/f") == file("/f")
    assert await store.get("/d") == directory("/d")


async def test_move_into_itself_or_of_root_is_bad_request(store: MetadataStore) -> None:
    await store.create(directory("/a"))
    with pytest.raises(BadRequest):
        await store.move("/a", "/a/inside")
    with pytest.raises(BadRequest):
        await store.move("/", "/x")
    with pytest.raises(BadRequest):
        await store.move("/a", "/", replace=True)


async def test_move_creates_missing_destination_parents(store: MetadataStore) -> None:
    await store.create(file("/f"))
    await store.move("/f", "/p/q/f", parents=[directory("/p"), directory("/p/q")])
    assert paths_of(await store.list_tree("/p")) == ["/p/q", "/p/q/f"]


async def test_move_below_a_missing_directory_raises_not_found(store: MetadataStore) -> None:
    await store.create(file("/f"))
    with pytest.raises(NotFound):
        await store.move("/f", "/nowhere/f")
    assert await store.get("/f") is not None


async def test_move_below_a_file_raises_not_a_directory(store: MetadataStore) -> None:
    await store.create(file("/f"))
    await store.create(file("/g"))
    with pytest.raises(NotADirectory):
        await store.move("/f", "/g/f")
    assert await store.get("/f") is not None


async def test_concurrent_moves_of_one_source_let_one_win(store: MetadataStore) -> None:
    await build_tree(store)
    moves = [store.move("/d/a", f"/moved-{n}") for n in range(6)]
    results = await asyncio.gather(*moves, return_exceptions=True)
    assert sum(result == [] for result in results) == 1
    assert all(isinstance(r, NotFound) for r in results if r != [])
    winner = f"/moved-{results.index([])}"
    assert len(await store.list_tree(winner)) == 3


# --- reconciler -----------------------------------------------------------------------


async def test_object_keys_lists_one_node_or_backend(store: MetadataStore) -> None:
    await store.create(directory("/d"))
    await store.create(file("/d/1", instance_id="node-0", object_key="k1"))
    await store.create(file("/d/2", instance_id="node-1", object_key="k2"))
    await store.create(file("/d/3", backend="s3", instance_id=None, object_key="k3"))
    await store.create(file("/d/4", instance_id="node-0", object_key="k4"))
    assert await store.object_keys("localfs", "node-0") == {"k1", "k4"}
    assert await store.object_keys("localfs", "node-1") == {"k2"}
    assert await store.object_keys("s3", None) == {"k3"}
    assert await store.object_keys("localfs", "node-9") == set()


async def test_referenced_keys_are_those_a_row_points_to_on_that_node(
    store: MetadataStore,
) -> None:
    await store.create(directory("/d"))
    await store.create(file("/d/1", instance_id="node-0", object_key="k1"))
    await store.create(file("/d/2", instance_id="node-1", object_key="k2"))
    await store.create(file("/d/3", backend="s3", instance_id=None, object_key="k3"))
    asked = ["k1", "k2", "k3", "gone"]
    assert await store.referenced_keys("localfs", "node-0", asked) == {"k1"}
    assert await store.referenced_keys("localfs", "node-1", asked) == {"k2"}
    assert await store.referenced_keys("s3", None, asked) == {"k3"}
    assert await store.referenced_keys("localfs", "node-0", []) == set()


async def test_referenced_keys_answers_many_keys_at_once(store: MetadataStore) -> None:
    await store.create(directory("/d"))
    for index in range(0, 1200, 100):
        await store.create(file(f"/d/{index}", instance_id="node-0", object_key=f"k{index}"))
    asked = [f"k{index}" for index in range(1200)]
    expected = {f"k{index}" for index in range(0, 1200, 100)}
    assert await store.referenced_keys("localfs", "node-0", asked) == expected


async def test_a_read_after_a_committed_update_sees_it_while_other_reads_run(
    store: MetadataStore,
) -> None:
    """Reads overlapping each other never pin an older snapshot: what a mutation decides
    from, right after another one committed, is that commit."""
    await store.create(file("/hot", etag="v0", object_key="k0"))
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            await store.get_many(["/", "/hot"])
            await store.get("/hot")

    readers = [asyncio.create_task(reader()) for _ in range(8)]
    try:
        for version in range(1, 150):
            current = await store.get("/hot")
            assert current is not None and current.etag == f"v{version - 1}"
            changed = current.evolve(etag=f"v{version}", object_key=f"k{version}")
            await store.update(changed, expected=current)
    finally:
        done.set()
        await asyncio.gather(*readers)


async def test_encoded_children_are_the_json_objects_byte_for_byte(store: MetadataStore) -> None:
    """What a store writes itself for a listing is what the gateway would have written."""
    await store.create(directory("/e", mode=0o1777, owner='quo"te', group="back\\slash"))
    await store.create(directory("/e/sub dir", mode=0o4755))
    await store.create(file("/e/a", replicas=("node-0", "node-1"), size=2**40, mode=0o7777))
    await store.create(file("/e/b", instance_id="node-2", replicas=()))  # an older row
    await store.create(file("/e/c", instance_id="node-1", replicas=("node-0",)))  # overwritten
    await store.create(file("/e/d", backend="s3", instance_id=None, etag=None))
    await store.create(file("/e/日本 🙂", instance_id=None, object_key="kept"), content=b"x")
    # Every escape JSON has: quote, backslash, the short ones, and the \u00XX ones.
    await store.create(
        file(
            '/e/ctl "\\ \b\t\n\f\r \x01\x1f\x7f',
            instance_id='n"0',
            replicas=('n"0', "n\\1"),
            owner="o\x02",
        )
    )

    encoded = await store.list_children_encoded("/e", limit=10)
    objects = [e.to_json() for e in await store.list_children("/e", limit=10)]
    after_a = await store.list_children_encoded("/e", limit=2, after="/e/a")

    assert [path for path, _ in encoded] == [o["path"] for o in objects]
    assert [path for path, _ in encoded] == [
        "/e/a", "/e/b", "/e/c", '/e/ctl "\\ \b\t\n\f\r \x01\x1f\x7f', "/e/d",
        "/e/sub dir", "/e/日本 🙂",
    ]  # fmt: skip
    assert [body for _, body in encoded] == [orjson.dumps(o) for o in objects]
    assert [orjson.loads(body) for _, body in encoded] == objects
    assert after_a == encoded[1:3]
