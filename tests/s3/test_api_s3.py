"""The files and directories API with bytes in S3: a whole gateway over real HTTP,
against SeaweedFS's S3 gateway and moto, plus backend selection and moves between
storage nodes and S3, including moves that fail (damaged bytes, a connection to S3
cut off midway by a fault-injecting proxy, a stopped node).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.gateway.test_files import error_code
from tests.support.harness import USERS, Cluster, make_settings, running_cluster
from tests.support.polling import wait_until
from tests.support.proxy import CuttingProxy
from tools.s3_server import MotoServer, S3Server, SeaweedS3Server

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
PART = 5 * MiB


def s3_section(server: S3Server, bucket: str, **extra: Any) -> dict[str, Any]:
    """The ``backend`` settings of a gateway whose new files go to ``bucket``."""
    return {
        "default_backend": "s3",
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
        "s3_region": server.region,
        "s3_bucket_name": bucket,
        "s3_endpoint": server.endpoint,
        **extra,
    }


def new_bucket(server: S3Server) -> str:
    name = f"callfs-{uuid.uuid4().hex[:16]}"
    server.create_bucket(name)
    return name


@dataclass
class S3Cluster:
    """A gateway (with one storage node) whose default backend is a fresh bucket."""

    cluster: Cluster
    server: S3Server
    bucket: str

    def client(self, user: str = "alice") -> httpx.AsyncClient:
        return self.cluster.client(user)

    def keys(self) -> set[str]:
        """The object keys in the bucket."""
        return set(self.server.keys(self.bucket))

    def uploads(self) -> list[str]:
        """Multipart uploads still open in the bucket."""
        return self.server.multipart_uploads(self.bucket)


@pytest.fixture
async def s3c(tmp_path: Path, s3_server: S3Server) -> AsyncIterator[S3Cluster]:
    bucket = new_bucket(s3_server)
    settings = make_settings(
        tmp_path, "sqlite", None, backend=s3_section(s3_server, bucket, s3_part_size=PART)
    )
    async with running_cluster(settings, nodes=1) as cluster:
        yield S3Cluster(cluster, s3_server, bucket)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def body_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


# --- files and directories, bytes in S3 ----------------------------------------------


async def test_created_files_live_in_s3_with_s3_etag_and_no_instance(s3c: S3Cluster) -> None:
    client = s3c.client()
    data = b"hello from s3\n" * 100

    response = await client.post("/v1/files/docs/a/hello.txt", content=data)

    assert response.status_code == 201
    body = response.json()
    assert (body["backend"], body["instance_id"]) == ("s3", None)
    assert body["size"] == len(data)
    assert body["etag"] == md5(data)
    assert len(s3c.keys()) == 1
    read = await client.get("/v1/files/docs/a/hello.txt")
    assert read.status_code == 200
    assert read.content == data
    assert read.headers["etag"] == f'"{md5(data)}"'
    assert "x-callfs-instance-id" not in read.headers
    head = await client.head("/v1/files/docs/a/hello.txt")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))
    assert head.content == b""
    parent = await client.head("/v1/files/docs/a")
    assert parent.headers["x-callfs-type"] == "directory"
    assert parent.headers["x-callfs-mode"] == "0755"
    empty = await client.post("/v1/files/docs/empty", content=b"")
    assert (empty.status_code, empty.json()["size"]) == (201, 0)
    assert (await client.get("/v1/files/docs/empty")).content == b""
    assert len(s3c.keys()) == 2


async def test_listings_report_backend_s3_and_null_instance(s3c: S3Cluster) -> None:
    client = s3c.client()
    for path in ("/tree/one.txt", "/tree/sub/two.txt", "/tree/sub/deeper/three.txt"):
        assert (await client.post(f"/v1/files{path}", content=path.encode())).status_code == 201

    children = await client.get("/v1/files/tree")
    listing = await client.get("/v1/directories/tree", params={"recursive": "true"})

    assert [item["name"] for item in children.json()] == ["one.txt", "sub"]
    assert listing.status_code == 200
    items = listing.json()["items"]
    assert [item["path"] for item in items] == [
        "/tree/one.txt",
        "/tree/sub",
        "/tree/sub/deeper",
        "/tree/sub/deeper/three.txt",
        "/tree/sub/two.txt",
    ]
    assert all(item["instance_id"] is None for item in items)
    assert {item["backend"] for item in items if item["type"] == "file"} == {"s3"}
    assert len(s3c.keys()) == 3


async def test_ranges_are_206_and_beyond_the_end_is_416(s3c: S3Cluster) -> None:
    client = s3c.client()
    await client.post("/v1/files/r.txt", content=b"0123456789")
    cases = {
        "bytes=2-5": (b"2345", "bytes 2-5/10"),
        "bytes=7-": (b"789", "bytes 7-9/10"),
        "bytes=-3": (b"789", "bytes 7-9/10"),
        "bytes=8-100": (b"89", "bytes 8-9/10"),
        "bytes=0-0": (b"0", "bytes 0-0/10"),
    }
    for header, (content, content_range) in cases.items():
        response = await client.get("/v1/files/r.txt", headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == content, header
        assert response.headers["content-range"] == content_range

    beyond = await client.get("/v1/files/r.txt", headers={"Range": "bytes=10-20"})

    assert beyond.status_code == 416
    assert error_code(beyond) == "RANGE_NOT_SATISFIABLE"
    assert beyond.headers["content-range"] == "bytes */10"


async def test_put_replaces_and_leaves_one_object_while_post_is_409(s3c: S3Cluster) -> None:
    client = s3c.client()
    await client.post("/v1/files/p.txt", content=b"first version")
    before = s3c.keys()

    refused = await client.post("/v1/files/p.txt", content=b"intruder")
    assert refused.status_code == 409
    assert error_code(refused) == "FILE_ALREADY_EXISTS"
    assert s3c.keys() == before

    replaced = await client.put("/v1/files/p.txt", content=b"second, longer version")

    assert replaced.status_code == 200
    assert replaced.json()["etag"] == md5(b"second, longer version")
    assert (await client.get("/v1/files/p.txt")).content == b"second, longer version"
    after = s3c.keys()
    assert len(after) == 1
    assert after != before
    created = await client.put("/v1/files/new.txt", content=b"made by put")
    assert created.status_code == 201
    assert created.json()["backend"] == "s3"
    assert len(s3c.keys()) == 2


async def test_preconditions_412_and_304_use_the_s3_etag(s3c: S3Cluster) -> None:
    client = s3c.client()
    created = await client.post("/v1/files/c.txt", content=b"cache me")
    etag = f'"{created.json()["etag"]}"'

    mismatch = await client.put("/v1/files/c.txt", content=b"x", headers={"If-Match": '"nope"'})
    exists = await client.put("/v1/files/c.txt", content=b"x", headers={"If-None-Match": "*"})
    cached = await client.get("/v1/files/c.txt", headers={"If-None-Match": etag})
    matching = await client.put("/v1/files/c.txt", content=b"updated", headers={"If-Match": etag})

    assert mismatch.status_code == 412
    assert error_code(mismatch) == "PRECONDITION_FAILED"
    assert exists.status_code == 412
    assert cached.status_code == 304
    assert cached.headers["etag"] == etag
    assert matching.status_code == 200
    assert (await client.get("/v1/files/c.txt")).content == b"updated"
    assert len(s3c.keys()) == 1


async def test_chmod_rename_and_subtree_move_keep_the_objects(s3c: S3Cluster) -> None:
    client = s3c.client()
    await client.post("/v1/files/old.txt", content=b"renamed")
    await client.post("/v1/files/src/a.txt", content=b"A")
    await client.post("/v1/files/src/deep/b.txt", content=b"B")
    keys = s3c.keys()

    chmod = await client.patch("/v1/files/old.txt", json={"mode": "0600"})
    renamed = await client.patch("/v1/files/old.txt", json={"name": "new.txt"})
    moved = await client.patch(
        "/v1/files/src", json={"destination": "/dst/inner", "create_parents": True}
    )

    assert chmod.status_code == 200
    assert chmod.json()["mode"] == "0600"
    assert renamed.status_code == 200
    assert renamed.json()["path"] == "/new.txt"
    assert (await client.head("/v1/files/new.txt")).headers["x-callfs-mode"] == "0600"
    assert (await s3c.client("bob").get("/v1/files/new.txt")).status_code == 403
    assert moved.status_code == 200
    assert (await client.get("/v1/files/new.txt")).content == b"renamed"
    assert (await client.get("/v1/files/dst/inner/a.txt")).content == b"A"
    assert (await client.get("/v1/files/dst/inner/deep/b.txt")).content == b"B"
    assert (await client.head("/v1/files/old.txt")).status_code == 404
    assert (await client.head("/v1/files/src/a.txt")).status_code == 404
    # Same-backend moves are metadata-only: the very same objects, nothing copied.
    assert s3c.keys() == keys


async def test_move_onto_existing_file_replaces_it_and_removes_its_object(
    s3c: S3Cluster,
) -> None:
    client = s3c.client()
    await client.post("/v1/files/a.txt", content=b"mover")
    await client.post("/v1/files/b.txt", content=b"victim")

    refused = await client.patch("/v1/files/a.txt", json={"destination": "/b.txt"})
    replaced = await client.patch(
        "/v1/files/a.txt", json={"destination": "/b.txt", "overwrite": True}
    )

    assert refused.status_code == 409
    assert replaced.status_code == 200
    assert (await client.get("/v1/files/b.txt")).content == b"mover"
    assert len(s3c.keys()) == 1


async def test_deletes_leave_an_empty_bucket(s3c: S3Cluster) -> None:
    client = s3c.client()
    await client.post("/v1/files/single.txt", content=b"x")
    for index in range(3):
        await client.post(f"/v1/files/tree/d{index}/f{index}.txt", content=b"y" * index)
    assert len(s3c.keys()) == 4

    single = await client.delete("/v1/files/single.txt")
    not_empty = await client.delete("/v1/files/tree")
    recursive = await client.delete("/v1/files/tree", params={"recursive": "true"})

    assert single.status_code == 204
    assert not_empty.status_code == 409
    assert error_code(not_empty) == "DIRECTORY_NOT_EMPTY"
    assert recursive.status_code == 204
    assert (await client.head("/v1/files/tree")).status_code == 404
    assert (await client.delete("/v1/files/single.txt")).status_code == 404
    await s3c.cluster.gateway.runtime.reclaimer.idle()
    assert s3c.keys() == set()


async def test_missing_object_is_404_and_the_log_names_the_path(
    s3c: S3Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    client = s3c.client()
    await client.post("/v1/files/lost/file.txt", content=b"soon gone")
    (key,) = s3c.keys()
    s3c.server.admin.delete_object(Bucket=s3c.bucket, Key=key)

    with caplog.at_level(logging.ERROR):
        response = await client.get("/v1/files/lost/file.txt")

    assert response.status_code == 404
    assert error_code(response) == "FILE_NOT_FOUND"
    assert "/lost/file.txt" in caplog.text
    assert key in caplog.text


async def test_upload_breaking_off_leaves_no_object_no_parts_and_the_old_content(
    s3c: S3Cluster,
) -> None:
    client = s3c.client()
    await client.post("/v1/files/keep.bin", content=b"old content")
    keys = s3c.keys()
    parts = urlsplit(s3c.cluster.gateway.url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    # Two whole parts reach S3 before the client goes away.
    writer.write(
        (
            "PUT /v1/files/keep.bin HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {USERS['alice'][0]}\r\n"
            f"Content-Length: {4 * PART}\r\n\r\n"
        ).encode()
        + b"n" * (2 * PART + 1000)
    )
    await writer.drain()
    await wait_until(lambda: bool(s3c.uploads()), what="a multipart upload to begin")
    writer.transport.abort()

    await wait_until(lambda: not s3c.uploads(), what="the multipart upload to be aborted")

    assert (await client.get("/v1/files/keep.bin")).content == b"old content"
    assert s3c.keys() == keys


async def test_metrics_count_each_s3_operation_once(s3c: S3Cluster) -> None:
    client = s3c.client()
    await client.post("/v1/files/counted.txt", content=b"count me")
    await client.get("/v1/files/counted.txt")
    await client.delete("/v1/files/counted.txt")

    text = (await client.get("/metrics")).text

    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("callfs_backend_op")
    }
    for operation in ("write", "read", "delete"):
        labels = f'{{backend_type="s3",operation="{operation}"}}'
        assert samples[f"callfs_backend_ops_total{labels}"] == 1.0, operation
        assert samples[f"callfs_backend_op_duration_seconds_count{labels}"] == 1.0, operation


# --- large files (SeaweedFS only: the multipart path costs time) --------------------


async def test_fifty_mib_upload_is_multipart_and_serves_ranges(
    tmp_path: Path, seaweedfs_s3: SeaweedS3Server
) -> None:
    bucket = new_bucket(seaweedfs_s3)
    settings = make_settings(tmp_path, "sqlite", None, backend=s3_section(seaweedfs_s3, bucket))
    block = body_of(MiB, seed=50)
    size = 50 * MiB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield block

    async with running_cluster(settings, nodes=1) as cluster:
        client = cluster.client("alice")
        created = await client.post("/v1/files/big.bin", content=body())
        assert created.status_code == 201
        assert created.json()["size"] == size
        # 50 MiB in 8 MiB parts: a multipart ETag naming its 7 parts.
        assert created.json()["etag"].endswith("-7")
        (key,) = seaweedfs_s3.keys(bucket)
        head = seaweedfs_s3.admin.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == size
        assert head["ETag"].strip('"') == created.json()["etag"]

        digest = hashlib.sha256()
        total = 0
        async with client.stream("GET", "/v1/files/big.bin") as stream:
            assert stream.status_code == 200
            async for piece in stream.aiter_bytes():
                digest.update(piece)
                total += len(piece)
        assert total == size
        assert digest.hexdigest() == hashlib.sha256(block * 50).hexdigest()

        # Across the first part boundary (8 MiB), and the tail.
        boundary = 8 * MiB
        for start, end in ((boundary - 10, boundary + 9), (size - 100, size - 1), (0, 0)):
            response = await client.get(
                "/v1/files/big.bin", headers={"Range": f"bytes={start}-{end}"}
            )
            assert response.status_code == 206
            expected = bytes(block[i % MiB] for i in range(start, end + 1))
            assert response.content == expected
            assert response.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert seaweedfs_s3.multipart_uploads(bucket) == []


# --- choosing the backend ------------------------------------------------------------


async def test_header_chooses_the_backend_of_a_new_file(s3c: S3Cluster) -> None:
    client = s3c.client()

    local = await client.post(
        "/v1/files/local.txt", content=b"on a node", headers={"X-CallFS-Backend": "localfs"}
    )
    remote = await client.post(
        "/v1/files/remote.txt", content=b"in s3", headers={"X-CallFS-Backend": "s3"}
    )
    default = await client.post("/v1/files/default.txt", content=b"default")
    bogus = await client.post(
        "/v1/files/bogus.txt", content=b"x", headers={"X-CallFS-Backend": "ftp"}
    )

    assert local.status_code == 201
    assert (local.json()["backend"], local.json()["instance_id"]) == ("localfs", "node-0")
    assert (remote.json()["backend"], remote.json()["instance_id"]) == ("s3", None)
    assert default.json()["backend"] == "s3"
    assert bogus.status_code == 400
    assert (await client.head("/v1/files/bogus.txt")).status_code == 404
    assert len(s3c.keys()) == 2
    assert len(s3c.cluster.stored_objects()) == 1
    assert (await client.get("/v1/files/local.txt")).content == b"on a node"
    # An existing file stays where its metadata says.
    replaced = await client.put(
        "/v1/files/local.txt", content=b"still local", headers={"X-CallFS-Backend": "s3"}
    )
    assert replaced.json()["backend"] == "localfs"
    assert len(s3c.keys()) == 2


async def test_asking_for_s3_where_it_is_not_configured_is_400(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite", None)
    async with running_cluster(settings, nodes=1) as cluster:
        client = cluster.client("alice")
        await client.post("/v1/files/here.txt", content=b"local")

        created = await client.post(
            "/v1/files/there.txt", content=b"x", headers={"X-CallFS-Backend": "s3"}
        )
        moved = await client.patch("/v1/files/here.txt", json={"backend": "s3"})

        assert created.status_code == 400
        assert error_code(created) == "BAD_REQUEST"
        assert (await client.head("/v1/files/there.txt")).status_code == 404
        assert moved.status_code == 400
        assert (await client.get("/v1/files/here.txt")).content == b"local"
        assert len(cluster.stored_objects()) == 1


# --- moving between backends ---------------------------------------------------------


async def test_file_moves_to_s3_and_back_with_its_content(s3c: S3Cluster) -> None:
    client = s3c.client()
    data = body_of(2 * PART + 12345, seed=7)
    created = await client.post(
        "/v1/files/travel/file.bin", content=data, headers={"X-CallFS-Backend": "localfs"}
    )
    assert created.json()["backend"] == "localfs"

    to_s3 = await client.patch("/v1/files/travel/file.bin", json={"backend": "s3"})

    assert to_s3.status_code == 200
    assert (to_s3.json()["backend"], to_s3.json()["instance_id"]) == ("s3", None)
    assert to_s3.json()["path"] == "/travel/file.bin"
    assert to_s3.json()["size"] == len(data)
    assert len(s3c.keys()) == 1
    assert s3c.cluster.stored_objects() == []
    stat = await client.head("/v1/files/travel/file.bin")
    assert "x-callfs-instance-id" not in stat.headers
    assert (await client.get("/v1/files/travel/file.bin")).content == data

    back = await client.patch(
        "/v1/files/travel/file.bin",
        json={"destination": "/home/file.bin", "backend": "localfs", "create_parents": True},
    )

    assert back.status_code == 200
    assert (back.json()["backend"], back.json()["instance_id"]) == ("localfs", "node-0")
    assert back.json()["path"] == "/home/file.bin"
    assert back.json()["etag"] == hashlib.sha256(data).hexdigest()
    assert (await client.head("/v1/files/travel/file.bin")).status_code == 404
    assert (await client.get("/v1/files/home/file.bin")).content == data
    assert s3c.keys() == set()
    assert len(s3c.cluster.stored_objects()) == 1
    assert s3c.uploads() == []


async def test_refused_moves_between_backends_move_nothing(
    s3c: S3Cluster,
) -> None:
    client = s3c.client()
    await client.post(
        "/v1/files/a.txt", content=b"local a", headers={"X-CallFS-Backend": "localfs"}
    )
    await client.post("/v1/files/b.txt", content=b"s3 b")

    response = await client.patch(
        "/v1/files/a.txt", json={"destination": "/b.txt", "backend": "s3"}
    )

    assert response.status_code == 409
    assert (await client.head("/v1/files/a.txt")).status_code == 200
    listing = (await client.get("/v1/files/")).json()
    assert {item["name"]: item["backend"] for item in listing} == {
        "a.txt": "localfs",
        "b.txt": "s3",
    }
    assert (await client.get("/v1/files/a.txt")).content == b"local a"
    assert (await client.get("/v1/files/b.txt")).content == b"s3 b"
    assert len(s3c.keys()) == 1
    assert len(s3c.cluster.stored_objects()) == 1
    await client.post("/v1/files/dir/f.txt", content=b"x")
    directory = await client.patch("/v1/files/dir", json={"backend": "localfs"})
    assert directory.status_code == 400
    assert (await client.get("/v1/files/dir/f.txt")).content == b"x"


async def test_move_between_backends_with_overwrite_replaces_the_destination(
    s3c: S3Cluster,
) -> None:
    client = s3c.client()
    await client.post(
        "/v1/files/a.txt", content=b"local a", headers={"X-CallFS-Backend": "localfs"}
    )
    await client.post("/v1/files/b.txt", content=b"s3 b")

    response = await client.patch(
        "/v1/files/a.txt", json={"destination": "/b.txt", "backend": "s3", "overwrite": True}
    )

    assert response.status_code == 200
    assert response.json()["backend"] == "s3"
    assert (await client.get("/v1/files/b.txt")).content == b"local a"
    assert (await client.head("/v1/files/a.txt")).status_code == 404
    assert len(s3c.keys()) == 1
    assert s3c.cluster.stored_objects() == []


async def test_stopped_s3_is_503_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = MotoServer(tmp_path / "moto")
    await asyncio.to_thread(server.start)
    try:
        bucket = new_bucket(server)
        # One attempt per request: retrying a refused connection only adds backoff.
        section = s3_section(server, bucket, s3_max_attempts=1)
        settings = make_settings(tmp_path, "sqlite", None, backend=section)
        async with running_cluster(settings, nodes=1) as cluster:
            client = cluster.client("alice")
            await client.post("/v1/files/in-s3.txt", content=b"s3 bytes")
            await client.post(
                "/v1/files/on-node.txt",
                content=b"node bytes",
                headers={"X-CallFS-Backend": "localfs"},
            )
            before = (await client.get("/v1/directories/", params={"recursive": "true"})).json()
            (key,) = server.keys(bucket)
            await asyncio.to_thread(server.stop)

            # Together: they overlap.
            responses = await asyncio.gather(
                client.get("/v1/files/in-s3.txt"),
                client.post("/v1/files/new/dir/file.txt", content=b"lost"),
                client.put("/v1/files/in-s3.txt", content=b"lost"),
                client.patch("/v1/files/on-node.txt", json={"backend": "s3"}),
                client.patch("/v1/files/in-s3.txt", json={"backend": "localfs"}),
            )

            for response in responses:
                assert response.status_code == 503, response.request
                assert error_code(response) == "BACKEND_UNAVAILABLE"
            after = (await client.get("/v1/directories/", params={"recursive": "true"})).json()
            assert after == before
            assert (await client.get("/v1/files/on-node.txt")).content == b"node bytes"
            assert len(cluster.stored_objects()) == 1
            # Metadata-only operations do not need S3.
            assert (await client.head("/v1/files/in-s3.txt")).status_code == 200
            renamed = await client.patch("/v1/files/in-s3.txt", json={"name": "renamed.txt"})
            assert renamed.status_code == 200
            # A delete goes metadata first: it succeeds and the orphaned object is logged.
            with caplog.at_level(logging.WARNING):
                deleted = await client.delete("/v1/files/renamed.txt")
            assert deleted.status_code == 204
            assert (await client.head("/v1/files/renamed.txt")).status_code == 404
            assert f"could not remove object {key}" in caplog.text
    finally:
        server.stop()


# --- moves between backends that fail ------------------------------------------------


async def namespace_of(client: httpx.AsyncClient) -> Any:
    """Every entry's metadata, to compare before and after a failed move."""
    return (await client.get("/v1/directories/", params={"recursive": "true"})).json()


def open_descriptors(path: Path) -> list[str]:
    """This process's file descriptors open on ``path`` (the storage nodes run in it)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                found.append(fd.name)
    return found


@asynccontextmanager
async def s3_behind(
    proxy: CuttingProxy, server: S3Server, tmp_path: Path
) -> AsyncIterator[tuple[Cluster, str]]:
    """A gateway with one storage node whose S3 bucket it reaches through ``proxy``,
    one attempt per request (a retry would be cut off the same way, after backoff)."""
    bucket = new_bucket(server)
    section = s3_section(
        server, bucket, s3_part_size=PART, s3_endpoint=proxy.endpoint, s3_max_attempts=1
    )
    settings = make_settings(tmp_path, "sqlite", None, backend=section)
    async with running_cluster(settings, nodes=1) as cluster:
        yield cluster, bucket


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
async def test_move_of_bytes_that_do_not_verify_is_503_and_leaves_the_file(
    s3c: S3Cluster, damage: str
) -> None:
    client = s3c.client()
    data = body_of(3 * MiB, seed=3)
    await client.post("/v1/files/rotten.bin", content=data, headers={"X-CallFS-Backend": "localfs"})
    before = await namespace_of(client)
    (stored,) = s3c.cluster.stored_objects()
    # Bit rot on the node's volume: the bytes no longer match their metadata.
    damaged = bytes(b ^ 0xFF for b in data[:16]) + data[16:] if damage == "flipped" else data[:MiB]
    stored.write_bytes(damaged)

    moved = await client.patch("/v1/files/rotten.bin", json={"backend": "s3"})

    assert moved.status_code == 503
    assert error_code(moved) == "BACKEND_UNAVAILABLE"
    assert await namespace_of(client) == before
    assert s3c.cluster.stored_objects() == [stored]
    assert stored.read_bytes() == damaged
    assert s3c.keys() == set()
    assert s3c.uploads() == []


async def test_move_to_s3_cut_off_midway_is_503_and_leaves_the_file_whole(
    tmp_path: Path, s3_server: S3Server
) -> None:
    async with (
        CuttingProxy(s3_server.port, upload_limit=2 * MiB) as proxy,
        s3_behind(proxy, s3_server, tmp_path) as (cluster, bucket),
    ):
        client = cluster.client("alice")
        data = body_of(2 * PART + 12345, seed=11)
        await client.post(
            "/v1/files/big.bin", content=data, headers={"X-CallFS-Backend": "localfs"}
        )
        before = await namespace_of(client)

        moved = await client.patch("/v1/files/big.bin", json={"backend": "s3"})

        assert moved.status_code == 503
        assert error_code(moved) == "BACKEND_UNAVAILABLE"
        assert proxy.cuts > 0
        assert await namespace_of(client) == before
        assert (await client.get("/v1/files/big.bin")).content == data
        # The multipart upload was aborted: no object and no parts in the bucket.
        assert s3_server.keys(bucket) == []
        assert s3_server.multipart_uploads(bucket) == []
        # The source stream was closed: the node let go of the object.
        (stored,) = cluster.stored_objects()
        await wait_until(lambda: not open_descriptors(stored), what="the node closed the source")


async def test_move_from_s3_cut_off_midway_is_503_and_leaves_no_partial_copy(
    tmp_path: Path, s3_server: S3Server
) -> None:
    async with (
        CuttingProxy(s3_server.port, download_limit=3 * MiB) as proxy,
        s3_behind(proxy, s3_server, tmp_path) as (cluster, bucket),
    ):
        client = cluster.client("alice")
        data = body_of(PART + 3 * MiB, seed=13)
        assert (await client.post("/v1/files/cloud.bin", content=data)).status_code == 201
        before = await namespace_of(client)

        moved = await client.patch("/v1/files/cloud.bin", json={"backend": "localfs"})

        assert moved.status_code == 503
        assert error_code(moved) == "BACKEND_UNAVAILABLE"
        assert proxy.cuts > 0
        assert await namespace_of(client) == before
        # The node dropped the partial copy; the object in S3 is whole.
        assert cluster.stored_objects() == []
        assert cluster.temp_files() == []
        (key,) = s3_server.keys(bucket)
        assert s3_server.admin.get_object(Bucket=bucket, Key=key)["Body"].read() == data


async def test_move_from_s3_to_a_stopped_node_is_503_and_leaves_the_file(
    s3c: S3Cluster,
) -> None:
    client = s3c.client()
    data = body_of(PART + 1, seed=5)
    await client.post("/v1/files/cloud.bin", content=data)
    # The node answers now, so the gateway still counts it up when the move begins.
    await client.post("/v1/files/local.txt", content=b"x", headers={"X-CallFS-Backend": "localfs"})
    before = await namespace_of(client)
    await s3c.cluster.stop_node("node-0")

    moved = await client.patch("/v1/files/cloud.bin", json={"backend": "localfs"})

    assert moved.status_code == 503
    assert error_code(moved) == "BACKEND_UNAVAILABLE"
    assert await namespace_of(client) == before
    assert (await client.get("/v1/files/cloud.bin")).content == data
    assert len(s3c.keys()) == 1
    assert s3c.uploads() == []


async def test_small_files_are_kept_in_the_metadata_store_only_on_localfs(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """``backend.inline_max_bytes`` keeps small storage-node files; S3 files stay in S3,
    and a kept file moved to S3 and back reads the same."""
    bucket = new_bucket(s3_server)
    backend = {**s3_section(s3_server, bucket, s3_part_size=PART), "inline_max_bytes": 64}
    settings = make_settings(tmp_path, "sqlite", None, backend=backend)
    async with running_cluster(settings, nodes=1) as cluster:
        client = cluster.client()

        remote = await client.post("/v1/files/r.txt", content=b"in s3")
        local = await client.post(
            "/v1/files/l.txt", content=b"kept", headers={"X-CallFS-Backend": "localfs"}
        )
        to_s3 = await client.patch("/v1/files/l.txt", json={"backend": "s3"})
        in_s3 = await client.head("/v1/files/l.txt")
        back = await client.patch("/v1/files/l.txt", json={"backend": "localfs"})

        assert remote.json()["backend"] == "s3"
        assert (local.json()["backend"], local.json()["replicas"]) == ("localfs", [])
        assert (to_s3.status_code, in_s3.headers["x-callfs-backend"]) == (200, "s3")
        assert back.status_code == 200 and back.json()["backend"] == "localfs"
        assert (await client.get("/v1/files/l.txt")).content == b"kept"
        assert (await client.get("/v1/files/r.txt")).content == b"in s3"
        await cluster.gateway.runtime.reclaimer.idle()
        assert len(s3_server.keys(bucket)) == 1
