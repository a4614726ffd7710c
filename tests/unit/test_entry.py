"""An entry's metadata object: which storage nodes hold a file."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from callfs.entry import Entry


def node_file(**fields: Any) -> Entry:
    return Entry(path="/f", type="file", mode=0o644, owner="alice", group="staff", **fields)


def test_a_node_file_lists_its_replicas_in_placement_order() -> None:
    entry = node_file(instance_id="node-2", replicas=("node-2", "node-0"), object_key="k")
    assert entry.holders == ("node-2", "node-0")
    body = entry.to_json()
    assert (body["instance_id"], body["replicas"]) == ("node-2", ["node-2", "node-0"])


def test_a_file_without_recorded_replicas_is_held_by_its_instance_id() -> None:
    entry = node_file(instance_id="node-1", object_key="k")
    assert entry.holders == ("node-1",)
    assert entry.to_json()["replicas"] == ["node-1"]


def test_s3_files_and_directories_have_no_replicas() -> None:
    s3 = node_file(backend="s3", object_key="objects/f")
    directory = Entry(path="/d", type="directory", mode=0o755, owner="alice", group="staff")
    for entry in (s3, directory):
        assert entry.holders == ()
        assert (entry.to_json()["instance_id"], entry.to_json()["replicas"]) == (None, [])


def test_an_entry_read_back_by_a_store_is_the_entry_the_constructor_makes() -> None:
    made = node_file(size=16, etag="e", instance_id="node-2", replicas=("node-2",), object_key="k")
    values = {item.name: getattr(made, item.name) for item in dataclasses.fields(Entry)}
    stored = Entry.stored(**values)
    assert stored == made
    assert vars(stored) == vars(made)  # every field set, none forgotten
    assert hash(stored) == hash(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stored.size = 1  # type: ignore[misc]
