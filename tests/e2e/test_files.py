"""Files from outside: create, read, replace, ranges, rename, move, chmod, delete, streaming."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.e2e.target import chunks, code

pytestmark = pytest.mark.e2e

LARGE = 24 * 1024 * 1024 + 123


def test_file_lifecycle_create_read_replace_delete(user1: httpx.Client, home: str) -> None:
    path = f"{home}/hello.txt"
    created = user1.post(f"/v1/files{path}", content=b"hello, world")
    assert created.status_code == 201
    entry = created.json()
    assert (entry["path"], entry["type"], entry["size"]) == (path, "file", 12)
    assert (entry["owner"], entry["mode"]) == ("api-user-1", "0644")

    read = user1.get(f"/v1/files{path}")
    assert read.status_code == 200
    assert read.content == b"hello, world"
    assert read.headers["content-type"] == "application/octet-stream"
    assert read.headers["x-callfs-size"] == "12"
    assert read.headers["etag"]

    head = user1.head(f"/v1/files{path}")
    assert head.status_code == 200
    assert head.headers["content-length"] == "12"
    assert head.content == b""

    again = user1.post(f"/v1/files{path}", content=b"other")
    assert again.status_code == 409
    assert code(again) == "FILE_ALREADY_EXISTS"
    assert user1.get(f"/v1/files{path}").content == b"hello, world"

    replaced = user1.put(f"/v1/files{path}", content=b"second version")
    assert replaced.status_code == 200
    assert replaced.json()["size"] == 14
    assert user1.get(f"/v1/files{path}").content == b"second version"

    assert user1.delete(f"/v1/files{path}").status_code == 204
    gone = user1.get(f"/v1/files{path}")
    assert gone.status_code == 404
    assert code(gone) == "FILE_NOT_FOUND"


def test_put_creates_a_missing_file_with_its_parents(user1: httpx.Client, home: str) -> None:
    response = user1.put(f"/v1/files{home}/deep/er/new.bin", content=b"\x00\x01\x02")
    assert response.status_code == 201
    parent = user1.head(f"/v1/files{home}/deep/er")
    assert parent.headers["x-callfs-type"] == "directory"
    assert user1.get(f"/v1/files{home}/deep/er/new.bin").content == b"\x00\x01\x02"


def test_large_upload_streams_through_the_ingress_intact(user1: httpx.Client, home: str) -> None:
    expected = hashlib.sha256()
    for piece in chunks(LARGE):
        expected.update(piece)
    created = user1.post(f"/v1/files{home}/large.bin", content=chunks(LARGE))
    assert created.status_code == 201, created.text
    assert created.json()["size"] == LARGE

    received = hashlib.sha256()
    size = 0
    with user1.stream("GET", f"/v1/files{home}/large.bin") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(LARGE)
        for piece in response.iter_bytes():
            received.update(piece)
            size += len(piece)
    assert size == LARGE
    assert received.hexdigest() == expected.hexdigest()


def test_ranges_and_conditional_reads(user1: httpx.Client, home: str) -> None:
    path = f"/v1/files{home}/digits.txt"
    user1.post(path, content=b"0123456789")
    partial = user1.get(path, headers={"Range": "bytes=2-5"})
    assert partial.status_code == 206
    assert partial.content == b"2345"
    assert partial.headers["content-range"] == "bytes 2-5/10"

    beyond = user1.get(path, headers={"Range": "bytes=50-60"})
    assert beyond.status_code == 416
    assert code(beyond) == "RANGE_NOT_SATISFIABLE"

    etag = user1.head(path).headers["etag"]
    assert user1.get(path, headers={"If-None-Match": etag}).status_code == 304
    stale = user1.put(path, content=b"new", headers={"If-Match": '"not-the-etag"'})
    assert stale.status_code == 412
    assert code(stale) == "PRECONDITION_FAILED"
    assert user1.get(path).content == b"0123456789"


def test_rename_move_and_chmod(user1: httpx.Client, home: str) -> None:
    user1.post(f"/v1/files{home}/draft.txt", content=b"text")
    renamed = user1.patch(f"/v1/files{home}/draft.txt", json={"name": "final.txt"})
    assert renamed.status_code == 200
    assert renamed.json()["path"] == f"{home}/final.txt"
    assert user1.get(f"/v1/files{home}/draft.txt").status_code == 404

    moved = user1.patch(
        f"/v1/files{home}/final.txt",
        json={"destination": f"{home}/archive/2026/final.txt", "create_parents": True},
    )
    assert moved.status_code == 200
    assert user1.get(f"/v1/files{home}/archive/2026/final.txt").content == b"text"

    chmod = user1.patch(f"/v1/files{home}/archive/2026/final.txt", json={"mode": "0640"})
    assert chmod.status_code == 200
    assert user1.head(f"/v1/files{home}/archive/2026/final.txt").headers["x-callfs-mode"] == "0640"


def test_put_on_directory_is_400(user1: httpx.Client, home: str) -> None:
    response = user1.put(f"/v1/files{home}", content=b"x")
    assert response.status_code == 400
    assert code(response) == "IS_A_DIRECTORY"


def test_encoded_dot_segments_are_400(user1: httpx.Client, home: str) -> None:
    response = user1.get(f"/v1/files{home}/a/%2e%2e/b")
    assert response.status_code == 400
    assert code(response) == "INVALID_PATH"


def test_unicode_and_space_names_round_trip(user1: httpx.Client, home: str) -> None:
    path = f"{home}/résumé 2026 + notes@x.txt"
    assert user1.post(f"/v1/files{path}", content=b"ok").status_code == 201
    assert user1.get(f"/v1/files{path}").content == b"ok"
    listing = user1.get(f"/v1/directories{home}").json()
    assert [item["path"] for item in listing["items"]] == [path]
