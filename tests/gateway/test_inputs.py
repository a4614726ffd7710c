"""Hostile inputs answer 4xx, never 500: Range digits, JSON bodies, trailing slashes, routes."""

from __future__ import annotations

import json

import pytest

from tests.gateway.test_files import error_code
from tests.support.harness import Cluster

CONTENT = b"0123456789"


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# Range (item 10)


@pytest.mark.parametrize(
    "header",
    [
        b"bytes=\xb2-",  # latin-1 superscript two
        b"bytes=-\xb2",
        b"bytes=0-\xb2",
        b"bytes=" + b"9" * 5000 + b"-",
        b"bytes=-" + b"9" * 5000,
        b"bytes=0-" + b"9" * 5000,
    ],
)
async def test_range_with_non_ascii_or_overlong_digits_serves_whole_file(
    cluster: Cluster, header: bytes
) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/r.bin", content=CONTENT)).status_code == 201
    for method in ("GET", "HEAD"):
        response = await client.request(method, "/v1/files/r.bin", headers={b"Range": header})
        assert response.status_code == 200, (method, response.text)
        assert response.headers["content-length"] == str(len(CONTENT))
        assert "content-range" not in response.headers
    assert (await client.get("/v1/files/r.bin", headers={b"Range": header})).content == CONTENT


async def test_ascii_ranges_still_answer_206_and_416(cluster: Cluster) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/r.bin", content=CONTENT)).status_code == 201
    partial = await client.get("/v1/files/r.bin", headers={"Range": "bytes=2-4"})
    assert partial.status_code == 206
    assert partial.content == b"234"
    far = await client.get("/v1/files/r.bin", headers={"Range": "bytes=" + "9" * 19 + "-"})
    assert far.status_code == 416
    assert error_code(far) == "RANGE_NOT_SATISFIABLE"


# JSON bodies (items 11 and 16)

NOT_FLAT_OBJECTS = [
    pytest.param(deep_array(100_000), id="array-100000-deep"),
    pytest.param(deep_object(100_000), id="object-100000-deep"),
    pytest.param(deep_array(20_000), id="array-20000-deep"),
    pytest.param(deep_object(10_000), id="object-10000-deep"),
    pytest.param(b'{"name": "n.txt", "extra": [1]}', id="array-value"),
    pytest.param(b'{"name": "n.txt", "extra": {"a": 1}}', id="object-value"),
    pytest.param(b'{"name": {"a": 1}}', id="object-name"),
    pytest.param(b"[]", id="array"),
]

FOREIGN_ENCODINGS = [
    pytest.param(b"\xef\xbb\xbf" + b'{"name": "n.txt"}', id="utf-8-bom"),
    pytest.param('{"name": "n.txt"}'.encode("utf-16"), id="utf-16"),
    pytest.param('{"name": "n.txt"}'.encode("utf-16-le"), id="utf-16-le"),
    pytest.param('{"name": "n.txt"}'.encode("utf-16-be"), id="utf-16-be"),
    pytest.param('{"name": "n.txt"}'.encode("utf-32"), id="utf-32"),
    pytest.param('{"name": "n.txt"}'.encode("utf-32-le"), id="utf-32-le"),
]


@pytest.mark.parametrize("body", NOT_FLAT_OBJECTS + FOREIGN_ENCODINGS)
async def test_patch_body_not_a_flat_utf8_object_is_400(cluster: Cluster, body: bytes) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/f.txt", content=CONTENT)).status_code == 201
    response = await client.patch(
        "/v1/files/f.txt", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert error_code(response) == "BAD_REQUEST"
    assert (await client.get("/v1/files/f.txt")).content == CONTENT
    assert (await client.head("/v1/files/n.txt")).status_code == 404


async def test_patch_flat_utf8_body_still_renames(cluster: Cluster) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/f.txt", content=CONTENT)).status_code == 201
    body = json.dumps({"name": "ñ.txt", "overwrite": False, "unknown": None}, ensure_ascii=False)
    response = await client.patch("/v1/files/f.txt", content=body.encode())
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/ñ.txt"


# Trailing slashes in PATCH (item 16)


async def test_patch_on_file_with_trailing_slash_is_400_not_a_directory(
    cluster: Cluster,
) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/f.txt", content=CONTENT)).status_code == 201
    for body in (
        {"name": "g.txt"},
        {"destination": "/g.txt"},
        {"mode": "0600"},
        {"backend": "localfs"},
    ):
        response = await client.patch("/v1/files/f.txt/", json=body)
        assert response.status_code == 400, (body, response.text)
        assert error_code(response) == "NOT_A_DIRECTORY"
    entry = await client.head("/v1/files/f.txt")
    assert entry.status_code == 200
    assert entry.headers["x-callfs-mode"] == "0644"
    assert (await client.head("/v1/files/g.txt")).status_code == 404


async def test_patch_destination_with_trailing_slash_names_a_directory(
    cluster: Cluster,
) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/f.txt", content=CONTENT)).status_code == 201
    assert (await client.post("/v1/files/taken.txt", content=b"t")).status_code == 201
    assert (await client.post("/v1/files/d/")).status_code == 201
    for source, body in (
        ("/v1/files/f.txt", {"destination": "/g/"}),
        ("/v1/files/f.txt", {"destination": "/f.txt/"}),
        ("/v1/files/d", {"destination": "/taken.txt/"}),
        ("/v1/files/d/", {"destination": "/taken.txt/", "overwrite": True}),
    ):
        response = await client.patch(source, json=body)
        assert response.status_code == 400, (source, body, response.text)
        assert error_code(response) == "NOT_A_DIRECTORY"
    assert (await client.get("/v1/files/f.txt")).content == CONTENT
    assert (await client.get("/v1/files/taken.txt")).content == b"t"
    assert (await client.head("/v1/files/g")).status_code == 404
    assert (await client.head("/v1/files/d")).headers["x-callfs-type"] == "directory"


async def test_patch_directory_with_trailing_slashes_still_works(cluster: Cluster) -> None:
    client = cluster.client("alice")
    assert (await client.post("/v1/files/d/inner.txt", content=CONTENT)).status_code == 201
    moved = await client.patch("/v1/files/d/", json={"destination": "/e/"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["path"] == "/e"
    assert (await client.get("/v1/files/e/inner.txt")).content == CONTENT
    chmod = await client.patch("/v1/files/e/", json={"mode": "0700"})
    assert chmod.status_code == 200, chmod.text
    assert (await client.head("/v1/files/e")).headers["x-callfs-mode"] == "0700"


# Routes (item 17)


@pytest.mark.parametrize(
    ("method", "target"),
    [("GET", "/v2/nothing"), ("GET", "/v1/file/x"), ("POST", "/v1/nothing"), ("GET", "/ui/no.js")],
)
async def test_unknown_route_is_404_not_found(cluster: Cluster, method: str, target: str) -> None:
    response = await cluster.client("alice").request(method, target)
    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


async def test_absent_file_is_still_404_file_not_found(cluster: Cluster) -> None:
    response = await cluster.client("alice").get("/v1/files/absent")
    assert response.status_code == 404
    assert error_code(response) == "FILE_NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "target"),
    [("DELETE", "/health"), ("POST", "/v1/directories/x"), ("PUT", "/metrics")],
)
async def test_wrong_method_is_405_with_json_error(
    cluster: Cluster, method: str, target: str
) -> None:
    response = await cluster.client("alice").request(method, target)
    assert response.status_code == 405
    assert error_code(response) == "BAD_REQUEST"
    assert "allow" in response.headers
