"""The path a handler acts on is the one the router matched, and every broken path is 400.

Requests go out over a raw socket, so the request line reaches the gateway exactly as
written here.
"""

from __future__ import annotations

import json

import httpx

from tests.gateway.test_http import raw_request
from tests.support.harness import USERS, Cluster

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

# Each spells the fixed prefix with encoded characters; cut from the raw URL by the
# prefix's length, each used to name the entry in the comment.
ENCODED_PREFIXES = [
    "/v1%2ffiles/victim.txt",  # /es/victim.txt
    "/v1%2Ffiles/victim.txt",  # /es/victim.txt
    "/%761/files/victim.txt",  # /es/victim.txt
    "/v1/fil%65s/x",  # /5s/x
    "/v1/fil%65s/",  # /5s/
    "/v1/fil%65s",  # /5s (the route without a path)
    "/v1/files%2Fx",  # %2Fx (the separator after the prefix, encoded)
]
ENCODED_LISTINGS = [
    "/v1%2fdirectories/",  # /es/
    "/v1/director%69es/",  # /5s/
    "/v1/directori%65s/y",  # /5s/y
    "/v1/directori%65s",  # /5s
]

CONTROL_CHARACTERS = ("%0A", "%0a", "%0D", "%00", "%01", "%09", "%1B", "%1F", "%7F")


async def snapshot(cluster: Cluster) -> dict[str, object]:
    """Every entry under / (path, type, size, etag, mode) and every file's content."""
    root = cluster.client("root")
    listing = await root.get("/v1/directories/", params={"recursive": "true"})
    assert listing.status_code == 200
    seen: dict[str, object] = {}
    for item in listing.json()["items"]:
        content = None
        if item["type"] == "file":
            content = (await root.get(f"/v1/files{item['path']}")).content
        seen[item["path"]] = (item["type"], item["size"], item.get("etag"), item["mode"], content)
    return seen


async def seed(cluster: Cluster) -> dict[str, object]:
    """Files at every path the cut raw URLs above used to name, and at the intended ones."""
    alice = cluster.client("alice")
    for path in ("es/victim.txt", "victim.txt", "5s/x", "x", "5s/y/inner.txt", "y/inner.txt"):
        response = await alice.post(f"/v1/files/{path}", content=path.encode())
        assert response.status_code == 201, (path, response.text)
    return await snapshot(cluster)


async def unknown_endpoint(cluster: Cluster) -> dict[str, str]:
    response = await cluster.client("alice").get("/v2/nothing")
    assert response.status_code == 404
    body: dict[str, str] = response.json()
    return body


async def test_a_delete_through_an_encoded_prefix_deletes_nothing(cluster: Cluster) -> None:
    before = await seed(cluster)
    key = USERS["alice"][0]
    for target in ("/v1%2ffiles/victim.txt", "/v1/fil%65s/x", "/v1/fil%65s/y/inner.txt"):
        status, body = await raw_request(cluster.gateway.url, "DELETE", target, key)
        assert status == 404, (target, body)
        assert json.loads(body)["message"] == "no such endpoint"
    assert await snapshot(cluster) == before


async def test_an_encoded_files_prefix_is_no_endpoint_and_touches_nothing(
    cluster: Cluster,
) -> None:
    before = await seed(cluster)
    expected = await unknown_endpoint(cluster)
    assert expected["message"] == "no such endpoint"
    key = USERS["alice"][0]
    for target in ENCODED_PREFIXES:
        for method in METHODS:
            status, body = await raw_request(cluster.gateway.url, method, target, key)
            assert status == 404, (method, target, body)
            if method != "HEAD":
                assert json.loads(body) == expected, (method, target, body)
        status, _ = await raw_request(
            cluster.gateway.url, "DELETE", target + "?recursive=true", key
        )
        assert status == 404, target
    assert await snapshot(cluster) == before


async def test_an_encoded_directories_prefix_is_no_endpoint(cluster: Cluster) -> None:
    before = await seed(cluster)
    expected = await unknown_endpoint(cluster)
    key = USERS["alice"][0]
    for target in ENCODED_LISTINGS:
        for suffix in ("", "?recursive=true"):
            status, body = await raw_request(cluster.gateway.url, "GET", target + suffix, key)
            assert status == 404, (target, body)
            assert json.loads(body) == expected, (target, body)
    assert await snapshot(cluster) == before


async def test_plain_and_encoded_names_after_the_prefix_still_work(cluster: Cluster) -> None:
    """Percent-decoding once applies to the entry path; only the fixed prefix is literal."""
    alice = cluster.client("alice")
    url = httpx.URL(cluster.gateway.url)
    assert (await alice.post("/v1/files/dir/a b%.txt", content=b"1")).status_code == 201
    response = await alice.get(url.copy_with(raw_path=b"/v1/files/dir/a%20b%25.txt"))
    assert response.status_code == 200
    assert response.content == b"1"
    listing = await alice.get(url.copy_with(raw_path=b"/v1/directories/di%72"))
    assert listing.status_code == 200
    assert [item["path"] for item in listing.json()["items"]] == ["/dir/a b%.txt"]
    assert (await alice.get(url.copy_with(raw_path=b"/v1/files"))).status_code == 200
    assert (await alice.get(url.copy_with(raw_path=b"/v1/directories"))).status_code == 200
    response = await alice.get(url.copy_with(raw_path=b"/v1/files/dir%2Fa%20b%25.txt"))
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_PATH"


async def test_control_characters_are_400_invalid_path_on_every_method(
    cluster: Cluster,
) -> None:
    before = await seed(cluster)
    key = USERS["alice"][0]
    for char in CONTROL_CHARACTERS:
        files = [
            f"/v1/files/a{char}b",
            f"/v1/files/es/{char}victim.txt",
            f"/v1/files/es{char}/victim.txt",
            f"/v1/files/victim.txt{char}",
            f"/v1/files/{char}",
            f"/v1/files/5s/{char}/",
        ]
        for target in files:
            for method in METHODS:
                status, body = await raw_request(cluster.gateway.url, method, target, key)
                assert status == 400, (method, target, body)
                if method != "HEAD":
                    assert json.loads(body)["code"] == "INVALID_PATH", (method, target, body)
        listings = [
            f"/v1/directories/a{char}b",
            f"/v1/directories/es{char}/x",
            f"/v1/directories/5s{char}",
            f"/v1/directories/{char}?recursive=true",
        ]
        for target in listings:
            status, body = await raw_request(cluster.gateway.url, "GET", target, key)
            assert status == 400, (target, body)
            assert json.loads(body)["code"] == "INVALID_PATH", (target, body)
    assert await snapshot(cluster) == before
