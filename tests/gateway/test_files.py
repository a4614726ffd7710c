"""Every row of API.md's files table, through real HTTP, on both metadata stores."""

from __future__ import annotations

import hashlib

from tests.support.harness import Cluster


def error_code(response: object) -> str:
    """The ``code`` of an API error body, checking it is the documented JSON."""
    assert response.headers["content-type"].startswith("application/json")  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"code", "message"}
    code: str = body["code"]
    return code


async def test_post_creates_file_with_metadata(cluster: Cluster) -> None:
    client = cluster.client("alice")
    response = await client.post("/v1/files/docs/hello.txt", content=b"hello world")
    assert response.status_code == 201
    body = response.json()
    assert body["path"] == "/docs/hello.txt"
    assert body["name"] == "hello.txt"
    assert body["type"] == "file"
    assert body["size"] == 11
    assert body["mode"] == "0644"
    assert body["owner"] == "alice"
    assert body["group"] == "staff"
    assert body["backend"] == "localfs"
    assert body["instance_id"] in cluster.nodes
    assert body["etag"] == hashlib.sha256(b"hello world").hexdigest()
    assert body["mtime"].endswith("Z")


async def test_post_creates_missing_parents_as_0755(cluster: Cluster) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/a/b/c.txt", content=b"x")).status_code == 201
    parent = await client.head("/v1/files/a/b")
    assert parent.status_code == 200
    assert parent.headers["x-callfs-type"] == "directory"
    assert parent.headers["x-callfs-mode"] == "0755"
    assert parent.headers["x-callfs-owner"] == "alice"


async def test_post_existing_file_is_409_and_keeps_content(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/f.txt", content=b"original")
    response = await client.post("/v1/files/f.txt", content=b"intruder")
    assert response.status_code == 409
    assert error_code(response) == "FILE_ALREADY_EXISTS"
    assert (await client.get("/v1/files/f.txt")).content == b"original"


async def test_post_on_existing_directory_is_409(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/d/")
    response = await client.post("/v1/files/d", content=b"x")
    assert response.status_code == 409
    assert error_code(response) == "FILE_ALREADY_EXISTS"


async def test_post_trailing_slash_creates_directory_then_200(cluster: Cluster) -> None:
    client = cluster.client("alice")
    first = await client.post("/v1/files/newdir/")
    assert first.status_code == 201
    assert first.json()["type"] == "directory"
    assert first.json()["mode"] == "0755"
    again = await client.post("/v1/files/newdir/")
    assert again.status_code == 200
    assert again.json()["path"] == "/newdir"


async def test_post_directory_accepts_original_json_body(cluster: Cluster) -> None:
    client = cluster.client("alice")
    response = await client.post("/v1/files/projects/", json={"type": "directory"})
    assert response.status_code == 201
    assert response.json()["type"] == "directory"


async def test_post_directory_where_file_exists_is_409(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/thing", content=b"x")
    response = await client.post("/v1/files/thing/")
    assert response.status_code == 409
    assert error_code(response) == "FILE_ALREADY_EXISTS"


async def test_post_with_mode_query(cluster: Cluster) -> None:
    client = cluster.client("alice")
    file = await client.post("/v1/files/secret.txt?mode=0600", content=b"s")
    assert file.json()["mode"] == "0600"
    directory = await client.post("/v1/files/private/?mode=0750")
    assert directory.json()["mode"] == "0750"


async def test_post_with_bad_mode_is_400(cluster: Cluster) -> None:
    client = cluster.client("alice")
    for mode in ("0999", "abc", "12345", "-644"):
        response = await client.post(f"/v1/files/m.txt?mode={mode}", content=b"x")
        assert response.status_code == 400, mode
        assert error_code(response) == "BAD_REQUEST"
    assert (await client.head("/v1/files/m.txt")).status_code == 404


async def test_get_file_streams_bytes_with_headers(cluster: Cluster) -> None:
    client = cluster.client("alice")
    data = bytes(range(256)) * 5000
    await client.post("/v1/files/bin.dat", content=data)
    response = await client.get("/v1/files/bin.dat")
    assert response.status_code == 200
    assert response.content == data
    headers = response.headers
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == str(len(data))
    assert headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert headers["accept-ranges"] == "bytes"
    assert "last-modified" in headers
    assert headers["x-callfs-type"] == "file"
    assert headers["x-callfs-size"] == str(len(data))
    assert headers["x-callfs-mode"] == "0644"
    assert headers["x-callfs-owner"] == "alice"
    assert headers["x-callfs-group"] == "staff"
    assert headers["x-callfs-mtime"].endswith("Z")
    assert headers["x-callfs-instance-id"] in cluster.nodes


async def test_get_empty_file(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/empty", content=b"")
    response = await client.get("/v1/files/empty")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"


async def test_get_absent_is_404(cluster: Cluster) -> None:
    response = await cluster.client("alice").get("/v1/files/nope.txt")
    assert response.status_code == 404
    assert error_code(response) == "FILE_NOT_FOUND"


async def test_get_range_is_206(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/r.txt", content=b"0123456789")
    cases = {
        "bytes=2-5": (b"2345", "bytes 2-5/10"),
        "bytes=7-": (b"789", "bytes 7-9/10"),
        "bytes=-3": (b"789", "bytes 7-9/10"),
        "bytes=8-100": (b"89", "bytes 8-9/10"),
    }
    for header, (content, content_range) in cases.items():
        response = await client.get("/v1/files/r.txt", headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == content
        assert response.headers["content-range"] == content_range
        assert response.headers["content-length"] == str(len(content))


async def test_get_unsatisfiable_range_is_416(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/r.txt", content=b"0123456789")
    response = await client.get("/v1/files/r.txt", headers={"Range": "bytes=10-20"})
    assert response.status_code == 416
    assert error_code(response) == "RANGE_NOT_SATISFIABLE"
    assert response.headers["content-range"] == "bytes */10"


async def test_get_malformed_range_serves_whole_file(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/r.txt", content=b"0123456789")
    response = await client.get("/v1/files/r.txt", headers={"Range": "bytes=abc"})
    assert response.status_code == 200
    assert response.content == b"0123456789"


async def test_if_none_match_is_304(cluster: Cluster) -> None:
    client = cluster.client("alice")
    created = await client.post("/v1/files/c.txt", content=b"cache me")
    etag = f'"{created.json()["etag"]}"'
    response = await client.get("/v1/files/c.txt", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    other = await client.get("/v1/files/c.txt", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200


async def test_get_directory_lists_children(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/dir/b.txt", content=b"b")
    await client.post("/v1/files/dir/a.txt", content=b"a")
    await client.post("/v1/files/dir/sub/deep.txt", content=b"d")
    for url in ("/v1/files/dir", "/v1/files/dir/"):
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["x-callfs-type"] == "directory"
        assert response.headers["x-callfs-size"] == "0"
        items = response.json()
        assert [item["path"] for item in items] == ["/dir/a.txt", "/dir/b.txt", "/dir/sub"]
        assert items[2]["type"] == "directory"
        assert items[2]["instance_id"] is None


async def test_get_file_with_trailing_slash_is_not_a_directory(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/plain.txt", content=b"x")
    response = await client.get("/v1/files/plain.txt/")
    assert response.status_code == 400
    assert error_code(response) == "NOT_A_DIRECTORY"


async def test_head_file_has_get_headers_and_no_body(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/h.txt", content=b"twelve bytes")
    response = await client.head("/v1/files/h.txt")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "12"
    assert response.headers["x-callfs-size"] == "12"
    assert response.headers["etag"].startswith('"')


async def test_head_absent_is_404(cluster: Cluster) -> None:
    response = await cluster.client("alice").head("/v1/files/absent")
    assert response.status_code == 404


async def test_put_replaces_content_200(cluster: Cluster) -> None:
    client = cluster.client("alice")
    created = await client.post("/v1/files/p.txt", content=b"one")
    response = await client.put("/v1/files/p.txt", content=b"two!")
    assert response.status_code == 200
    assert response.json()["size"] == 4
    assert response.json()["etag"] != created.json()["etag"]
    assert response.json()["instance_id"] == created.json()["instance_id"]
    assert (await client.get("/v1/files/p.txt")).content == b"two!"
    # The old version's bytes are gone: one object per file.
    assert len(cluster.stored_objects()) == 1


async def test_put_absent_creates_201(cluster: Cluster) -> None:
    client = cluster.client("alice")
    response = await client.put("/v1/files/new/put.txt", content=b"fresh")
    assert response.status_code == 201
    assert (await client.get("/v1/files/new/put.txt")).content == b"fresh"


async def test_put_on_directory_is_400(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/adir/")
    response = await client.put("/v1/files/adir", content=b"x")
    assert response.status_code == 400
    assert error_code(response) == "IS_A_DIRECTORY"


async def test_put_with_trailing_slash_is_400(cluster: Cluster) -> None:
    response = await cluster.client("alice").put("/v1/files/x/", content=b"x")
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


async def test_put_if_match_mismatch_is_412(cluster: Cluster) -> None:
    client = cluster.client("alice")
    created = await client.post("/v1/files/im.txt", content=b"v1")
    stale = await client.put("/v1/files/im.txt", content=b"v2", headers={"If-Match": '"nope"'})
    assert stale.status_code == 412
    assert error_code(stale) == "PRECONDITION_FAILED"
    assert (await client.get("/v1/files/im.txt")).content == b"v1"
    fresh = await client.put(
        "/v1/files/im.txt", content=b"v2", headers={"If-Match": f'"{created.json()["etag"]}"'}
    )
    assert fresh.status_code == 200


async def test_put_if_none_match_star_on_existing_is_412(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/inm.txt", content=b"v1")
    response = await client.put("/v1/files/inm.txt", content=b"v2", headers={"If-None-Match": "*"})
    assert response.status_code == 412
    assert (await client.get("/v1/files/inm.txt")).content == b"v1"
    created = await client.put("/v1/files/inm2.txt", content=b"v", headers={"If-None-Match": "*"})
    assert created.status_code == 201


async def test_patch_rename_in_place(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/dir/old.txt", content=b"content")
    response = await client.patch("/v1/files/dir/old.txt", json={"name": "new.txt"})
    assert response.status_code == 200
    assert response.json()["path"] == "/dir/new.txt"
    assert (await client.get("/v1/files/dir/new.txt")).content == b"content"
    assert (await client.head("/v1/files/dir/old.txt")).status_code == 404


async def test_patch_move_subtree(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/src/a.txt", content=b"a")
    await client.post("/v1/files/src/sub/b.txt", content=b"b")
    response = await client.patch(
        "/v1/files/src", json={"destination": "/dst/moved", "create_parents": True}
    )
    assert response.status_code == 200
    assert response.json()["path"] == "/dst/moved"
    assert (await client.get("/v1/files/dst/moved/sub/b.txt")).content == b"b"
    assert (await client.get("/v1/files/dst/moved/a.txt")).content == b"a"
    assert (await client.head("/v1/files/src")).status_code == 404


async def test_patch_move_without_parent_is_404(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/f.txt", content=b"a")
    response = await client.patch("/v1/files/f.txt", json={"destination": "/no/such/f.txt"})
    assert response.status_code == 404
    assert (await client.head("/v1/files/f.txt")).status_code == 200


async def test_patch_destination_exists_is_409_unless_overwrite(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/one.txt", content=b"one")
    await client.post("/v1/files/two.txt", content=b"two")
    refused = await client.patch("/v1/files/one.txt", json={"destination": "/two.txt"})
    assert refused.status_code == 409
    assert error_code(refused) == "FILE_ALREADY_EXISTS"
    assert (await client.get("/v1/files/two.txt")).content == b"two"
    done = await client.patch(
        "/v1/files/one.txt", json={"destination": "/two.txt", "overwrite": True}
    )
    assert done.status_code == 200
    assert (await client.get("/v1/files/two.txt")).content == b"one"
    assert (await client.head("/v1/files/one.txt")).status_code == 404
    assert len(cluster.stored_objects()) == 1


async def test_patch_onto_existing_directory_is_409_without_overwrite(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/mover.txt", content=b"m")
    await client.post("/v1/files/taken/")
    refused = await client.patch("/v1/files/mover.txt", json={"destination": "/taken"})
    assert refused.status_code == 409
    assert error_code(refused) == "FILE_ALREADY_EXISTS"
    # With overwrite, a file still cannot replace a directory.
    forced = await client.patch(
        "/v1/files/mover.txt", json={"destination": "/taken", "overwrite": True}
    )
    assert forced.status_code == 400
    assert error_code(forced) == "IS_A_DIRECTORY"
    assert (await client.get("/v1/files/mover.txt")).content == b"m"


async def test_patch_overwrite_query_parameter(cluster: Cluster) -> None:
    """``?overwrite=true`` replaces the destination, as in the original CallFS."""
    client = cluster.client("alice")
    await client.post("/v1/files/q1.txt", content=b"new")
    await client.post("/v1/files/q2.txt", content=b"old")
    response = await client.patch(
        "/v1/files/q1.txt", params={"overwrite": "true"}, json={"destination": "/q2.txt"}
    )
    assert response.status_code == 200
    assert (await client.get("/v1/files/q2.txt")).content == b"new"


async def test_patch_directory_into_itself_is_400(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/loop/inner/")
    response = await client.patch("/v1/files/loop", json={"destination": "/loop/inner/loop"})
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


async def test_patch_absent_is_404(cluster: Cluster) -> None:
    response = await cluster.client("alice").patch("/v1/files/ghost", json={"name": "x"})
    assert response.status_code == 404
    assert error_code(response) == "FILE_NOT_FOUND"


async def test_patch_bad_bodies_are_400(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/b.txt", content=b"x")
    bodies: list[bytes] = [
        b"",
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"name": ""}',
        b'{"name": "a/b"}',
        b'{"name": ".."}',
        b'{"name": 5}',
        b'{"destination": "/a/../b"}',
        b'{"destination": 7}',
        b'{"destination": "/x", "overwrite": "yes"}',
        b'{"mode": 420}',
        b'{"mode": "9999"}',
    ]
    for body in bodies:
        response = await client.patch(
            "/v1/files/b.txt", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, body
        assert error_code(response) in ("BAD_REQUEST", "INVALID_PATH")
    assert (await client.get("/v1/files/b.txt")).content == b"x"


async def test_patch_chmod(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/c.txt", content=b"x")
    response = await client.patch("/v1/files/c.txt", json={"mode": "0640"})
    assert response.status_code == 200
    assert response.json()["path"] == "/c.txt"
    assert (await client.head("/v1/files/c.txt")).headers["x-callfs-mode"] == "0640"


async def test_delete_file_204(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/d.txt", content=b"x")
    response = await client.delete("/v1/files/d.txt")
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.head("/v1/files/d.txt")).status_code == 404
    assert cluster.stored_objects() == []


async def test_delete_absent_is_404(cluster: Cluster) -> None:
    response = await cluster.client("alice").delete("/v1/files/none")
    assert response.status_code == 404
    assert error_code(response) == "FILE_NOT_FOUND"


async def test_delete_non_empty_directory_is_409(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/full/f.txt", content=b"x")
    response = await client.delete("/v1/files/full")
    assert response.status_code == 409
    assert error_code(response) == "DIRECTORY_NOT_EMPTY"
    assert (await client.get("/v1/files/full/f.txt")).content == b"x"


async def test_delete_empty_directory_204(cluster: Cluster) -> None:
    client = cluster.client("alice")
    await client.post("/v1/files/empty/")
    assert (await client.delete("/v1/files/empty/")).status_code == 204
    assert (await client.head("/v1/files/empty")).status_code == 404


async def test_delete_recursive_removes_subtree_and_bytes(cluster: Cluster) -> None:
    client = cluster.client("alice")
    for name in ("t/a", "t/b/c", "t/b/d/e"):
        await client.post(f"/v1/files/{name}", content=name.encode())
    response = await client.delete("/v1/files/t", params={"recursive": "true"})
    assert response.status_code == 204
    assert (await client.head("/v1/files/t/b/c")).status_code == 404
    await cluster.gateway.runtime.reclaimer.idle()
    assert cluster.stored_objects() == []


async def test_root_is_a_sticky_directory(cluster: Cluster) -> None:
    response = await cluster.client("alice").head("/v1/files/")
    assert response.status_code == 200
    assert response.headers["x-callfs-type"] == "directory"
    assert response.headers["x-callfs-mode"] == "1777"
    assert response.headers["x-callfs-owner"] == "root"


async def test_content_length_over_maximum_is_413(cluster: Cluster) -> None:
    cluster.settings.server.max_upload_bytes = 10
    client = cluster.client("alice")
    response = await client.post("/v1/files/big", content=b"x" * 11)
    assert response.status_code == 413
    assert error_code(response) == "PAYLOAD_TOO_LARGE"
    assert (await client.head("/v1/files/big")).status_code == 404
    assert cluster.temp_files() == []


async def test_files_around_one_chunk_download_whole_and_in_ranges(cluster: Cluster) -> None:
    # Up to one chunk is answered in one piece, beyond it streamed: both say the same.
    client = cluster.client("alice")
    chunk = cluster.settings.server.chunk_size
    for size in (chunk - 1, chunk, chunk + 1):
        data = hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1)
        data = data[:size]
        assert (await client.put(f"/v1/files/c{size}.bin", content=data)).status_code == 201
        whole = await client.get(f"/v1/files/c{size}.bin")
        assert whole.status_code == 200
        assert whole.headers["content-length"] == str(size)
        assert whole.content == data
        tail = await client.get(f"/v1/files/c{size}.bin", headers={"Range": "bytes=-10"})
        assert tail.status_code == 206
        assert tail.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
        assert tail.content == data[-10:]
