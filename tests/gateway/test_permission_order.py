"""API.md: the permission check comes before every other answer about an entry.

A caller without the permission gets 403 whatever ``Range``, ``If-Match`` or
``If-None-Match`` it sends, so neither a size nor a content hash leaks through a
416, 304 or 412; callers holding the permission get those answers as before.
"""

from __future__ import annotations

import httpx

from tests.gateway.test_files import error_code
from tests.support.harness import Cluster

WRONG_ETAG = '"' + "0" * 64 + '"'


async def private_file(cluster: Cluster) -> str:
    """Alice's 0600 file; returns its quoted ETag."""
    created = await cluster.client("alice").post(
        "/v1/files/private.txt?mode=0600", content=b"alice's secret"
    )
    assert created.status_code == 201
    return f'"{created.json()["etag"]}"'


def denied(response: httpx.Response) -> bool:
    return response.status_code == 403 and error_code(response) == "PERMISSION_DENIED"


async def test_unreadable_file_range_is_403_not_416(cluster: Cluster) -> None:
    await private_file(cluster)
    bob = cluster.client("bob")
    for method in ("GET", "HEAD"):
        for ranged in ("bytes=99999-", "bytes=0-3", "bytes=-5"):
            response = await bob.request(method, "/v1/files/private.txt", headers={"Range": ranged})
            assert response.status_code == 403, (method, ranged)
            assert "content-range" not in response.headers
    assert denied(await bob.get("/v1/files/private.txt", headers={"Range": "bytes=99999-"}))


async def test_unreadable_file_if_none_match_is_403_not_304(cluster: Cluster) -> None:
    etag = await private_file(cluster)
    bob = cluster.client("bob")
    for header in (etag, "*", WRONG_ETAG):
        assert denied(await bob.get("/v1/files/private.txt", headers={"If-None-Match": header}))
        response = await bob.head("/v1/files/private.txt", headers={"If-None-Match": header})
        assert response.status_code == 403, header
    both = {"If-None-Match": WRONG_ETAG, "Range": "bytes=99999-"}
    assert denied(await bob.get("/v1/files/private.txt", headers=both))


async def test_unwritable_file_preconditions_are_403_not_412(cluster: Cluster) -> None:
    etag = await private_file(cluster)
    bob = cluster.client("bob")
    for headers in (
        {"If-Match": WRONG_ETAG},
        {"If-Match": etag},
        {"If-None-Match": etag},
        {"If-None-Match": "*"},
        {"If-None-Match": WRONG_ETAG},
    ):
        response = await bob.put("/v1/files/private.txt", content=b"bob's", headers=headers)
        assert denied(response), headers
    assert (await cluster.client("alice").get("/v1/files/private.txt")).content == b"alice's secret"
    assert cluster.temp_files() == []


async def test_owner_still_gets_416_304_and_412(cluster: Cluster) -> None:
    etag = await private_file(cluster)
    alice = cluster.client("alice")
    ranged = await alice.get("/v1/files/private.txt", headers={"Range": "bytes=99999-"})
    assert ranged.status_code == 416
    assert ranged.headers["content-range"] == "bytes */14"
    head = await alice.head("/v1/files/private.txt", headers={"Range": "bytes=99999-"})
    assert head.status_code == 416
    assert (
        await alice.get("/v1/files/private.txt", headers={"If-None-Match": etag})
    ).status_code == 304
    assert (
        await alice.head("/v1/files/private.txt", headers={"If-None-Match": etag})
    ).status_code == 304
    for headers in ({"If-Match": WRONG_ETAG}, {"If-None-Match": etag}, {"If-None-Match": "*"}):
        response = await alice.put("/v1/files/private.txt", content=b"new", headers=headers)
        assert response.status_code == 412, headers
        assert error_code(response) == "PRECONDITION_FAILED"
    matched = await alice.put("/v1/files/private.txt", content=b"new", headers={"If-Match": etag})
    assert matched.status_code == 200


async def test_create_preconditions_in_unwritable_directory_are_403(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/home/?mode=0755")
    bob = cluster.client("bob")
    for headers in ({"If-Match": WRONG_ETAG}, {"If-Match": "*"}, {"If-None-Match": "*"}):
        response = await bob.put("/v1/files/home/absent.txt", content=b"x", headers=headers)
        assert denied(response), headers
    owner = await alice.put(
        "/v1/files/home/absent.txt", content=b"x", headers={"If-Match": WRONG_ETAG}
    )
    assert owner.status_code == 412


async def test_existing_entries_in_unwritable_places_are_403_before_409_and_400(
    cluster: Cluster,
) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/home/?mode=0755")
    await alice.post("/v1/files/home/f.txt", content=b"f")
    await alice.post("/v1/files/home/sub/?mode=0755")
    bob = cluster.client("bob")
    assert denied(await bob.post("/v1/files/home/f.txt", content=b"x"))
    assert denied(await bob.post("/v1/files/home/f.txt/"))
    assert denied(await bob.post("/v1/files/home/sub", content=b"x"))
    assert denied(await bob.put("/v1/files/home/sub", content=b"x"))
    # The owner, who may write there, gets API.md's answers.
    assert (await alice.post("/v1/files/home/f.txt", content=b"x")).status_code == 409
    assert (await alice.post("/v1/files/home/f.txt/")).status_code == 409
    assert (await alice.post("/v1/files/home/sub", content=b"x")).status_code == 409
    put_on_dir = await alice.put("/v1/files/home/sub", content=b"x")
    assert put_on_dir.status_code == 400
    assert error_code(put_on_dir) == "IS_A_DIRECTORY"
    # mkdir -p: an existing directory is fine for anyone who may reach it.
    assert (await bob.post("/v1/files/home/sub/")).status_code == 200
    assert (await alice.get("/v1/files/home/f.txt")).content == b"f"


async def test_untraversable_ancestor_is_403_whatever_the_headers(cluster: Cluster) -> None:
    alice = cluster.client("alice")
    await alice.post("/v1/files/locked/f.txt?mode=0644", content=b"f")
    await alice.patch("/v1/files/locked", json={"mode": "0700"})
    bob = cluster.client("bob")
    for path in ("/v1/files/locked/f.txt", "/v1/files/locked/absent"):
        assert denied(await bob.get(path, headers={"Range": "bytes=99999-"}))
        assert (await bob.head(path, headers={"If-None-Match": "*"})).status_code == 403
        for headers in ({"If-Match": WRONG_ETAG}, {"If-None-Match": "*"}):
            assert denied(await bob.put(path, content=b"x", headers=headers))
        assert denied(await bob.post(path, content=b"x"))


async def test_file_with_trailing_slash_needs_read_first(cluster: Cluster) -> None:
    await private_file(cluster)
    assert denied(await cluster.client("bob").get("/v1/files/private.txt/"))
    owner = await cluster.client("alice").get("/v1/files/private.txt/")
    assert owner.status_code == 400
    assert error_code(owner) == "NOT_A_DIRECTORY"
