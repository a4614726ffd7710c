"""Directories from outside: creation, listings (recursive, depth, pages), deletion."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.target import code

pytestmark = pytest.mark.e2e

TREE = ["a/1.txt", "a/2.txt", "a/b/3.txt", "a/b/c/4.txt", "z.txt"]


def make_tree(client: httpx.Client, home: str) -> None:
    for name in TREE:
        assert client.post(f"/v1/files{home}/{name}", content=name.encode()).status_code == 201


def paths(listing: dict[str, Any]) -> list[str]:
    return [item["path"] for item in listing["items"]]


def test_creating_a_directory_twice_is_idempotent(user1: httpx.Client, home: str) -> None:
    first = user1.post(f"/v1/files{home}/d/")
    assert first.status_code == 201
    assert first.json()["type"] == "directory"
    assert user1.post(f"/v1/files{home}/d/").status_code == 200
    clash = user1.post(f"/v1/files{home}/d", content=b"x")
    assert clash.status_code == 409
    assert code(clash) == "FILE_ALREADY_EXISTS"


def test_listing_shows_immediate_children_sorted(user1: httpx.Client, home: str) -> None:
    make_tree(user1, home)
    response = user1.get(f"/v1/directories{home}")
    assert response.status_code == 200
    listing = response.json()
    assert paths(listing) == [f"{home}/a", f"{home}/z.txt"]
    assert listing["count"] == 2
    assert listing["recursive"] is False
    assert response.headers["x-callfs-count"] == "2"

    children = user1.get(f"/v1/files{home}/a")
    assert children.headers["x-callfs-type"] == "directory"
    assert sorted(item["path"] for item in children.json()) == [
        f"{home}/a/1.txt",
        f"{home}/a/2.txt",
        f"{home}/a/b",
    ]


def test_recursive_listing_and_max_depth(user1: httpx.Client, home: str) -> None:
    make_tree(user1, home)
    full = user1.get(f"/v1/directories{home}", params={"recursive": "true"})
    assert full.headers["x-callfs-recursive"] == "true"
    expected = sorted(
        [f"{home}/{name}" for name in TREE] + [f"{home}/a", f"{home}/a/b", f"{home}/a/b/c"]
    )
    assert paths(full.json()) == expected

    shallow = user1.get(f"/v1/directories{home}", params={"recursive": "true", "max_depth": 1})
    assert paths(shallow.json()) == [
        f"{home}/a",
        f"{home}/a/1.txt",
        f"{home}/a/2.txt",
        f"{home}/a/b",
        f"{home}/z.txt",
    ]


def test_pages_of_a_recursive_listing_add_up_to_the_whole(user1: httpx.Client, home: str) -> None:
    make_tree(user1, home)
    whole = paths(user1.get(f"/v1/directories{home}", params={"recursive": "true"}).json())
    collected: list[str] = []
    params: dict[str, Any] = {"recursive": "true", "limit": 3}
    pages = 0
    while True:
        page = user1.get(f"/v1/directories{home}", params=params).json()
        assert page["count"] <= 3
        collected += paths(page)
        pages += 1
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
        assert pages < 10, "the cursor never ends"
    assert collected == whole
    assert pages >= 3


def test_listing_a_file_or_nothing(user1: httpx.Client, home: str) -> None:
    user1.post(f"/v1/files{home}/f.txt", content=b"x")
    on_file = user1.get(f"/v1/directories{home}/f.txt")
    assert on_file.status_code == 400
    assert code(on_file) == "NOT_A_DIRECTORY"
    absent = user1.get(f"/v1/directories{home}/nothing")
    assert absent.status_code == 404
    assert code(absent) == "FILE_NOT_FOUND"


def test_non_empty_directory_is_deleted_only_recursively(user1: httpx.Client, home: str) -> None:
    make_tree(user1, home)
    refused = user1.delete(f"/v1/files{home}/a")
    assert refused.status_code == 409
    assert code(refused) == "DIRECTORY_NOT_EMPTY"
    assert user1.get(f"/v1/files{home}/a/b/c/4.txt").status_code == 200

    assert user1.delete(f"/v1/files{home}/a", params={"recursive": "true"}).status_code == 204
    assert user1.get(f"/v1/directories{home}/a").status_code == 404
    assert user1.get(f"/v1/files{home}/a/b/c/4.txt").status_code == 404
    assert paths(user1.get(f"/v1/directories{home}").json()) == [f"{home}/z.txt"]
