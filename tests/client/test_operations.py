"""Every operation of the SDK, blocking and asyncio, against a real ``callfs dev``."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callfs.client import (
    AlreadyExists,
    AsyncClient,
    Client,
    DirectoryNotEmpty,
    Entry,
    IsADirectory,
    LinkUsed,
    NotADirectory,
    NotFound,
    NotModified,
    PreconditionFailed,
    RangeNotSatisfiable,
)
from tests.client.conftest import Server
from tests.client.transports import AsyncRecording, Recording

MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client(server: Server, **options: object) -> Client:
    return Client(server.url, server.key, **options)  # type: ignore[arg-type]


def async_client(server: Server, **options: object) -> AsyncClient:
    return AsyncClient(server.url, server.key, **options)  # type: ignore[arg-type]


def assert_file_entry(entry: Entry, path: str, data: bytes) -> None:
    now = datetime.now(UTC)
    assert entry.path == path
    assert entry.name == path.rsplit("/", 1)[1]
    assert entry.type == "file" and entry.is_file and not entry.is_dir
    assert entry.size == len(data)
    assert entry.mode == 0o644
    assert (entry.owner, entry.group) == ("api-user-1", "callfs")
    assert abs(entry.mtime - now) < timedelta(minutes=5)
    assert entry.mtime.tzinfo is not None
    assert entry.etag == sha256(data)
    assert entry.backend == "localfs"
    assert entry.instance_id is not None and entry.replicas[0] == entry.instance_id


class Chunks:
    """An iterator of ``count`` chunks that records how many were taken."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk, self.count, self.taken = chunk, count, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.taken += 1
            yield self.chunk


class ReadSizes(io.BufferedReader):
    """A binary file recording the size of every read asked of it."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self.sizes: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.sizes.append(-1 if size is None else size)
        return super().read(size)


# --- metadata, bytes in and out ------------------------------------------------------


def test_write_stat_read_exists(server: Server, home: str) -> None:
    path = f"{home}/docs/hello world+@é.txt"
    with client(server) as fs:
        written = fs.write(path, b"hello")
        assert_file_entry(written, path, b"hello")
        assert written.ctime is not None and written.ctime.tzinfo is not None
        stat = fs.stat(path)
        # stat is a HEAD: everything but ctime (not in its headers) matches the JSON entry.
        assert stat.ctime is None
        assert stat == Entry(**{**written.__dict__, "ctime": None})
        assert fs.read(path) == b"hello"
        assert fs.exists(path) and fs.exists(f"{home}/docs")
        assert not fs.exists(f"{home}/missing") and not fs.exists(f"{path}/")
        directory = fs.stat(f"{home}/docs")
        assert directory.is_dir and directory.mode == 0o755 and directory.etag is None
        assert directory.name == "docs" and directory.path == f"{home}/docs"


async def test_write_stat_read_exists_async(server: Server, home: str) -> None:
    path = f"{home}/docs/hello.txt"
    async with async_client(server) as fs:
        written = await fs.write(path, b"hello")
        assert_file_entry(written, path, b"hello")
        stat = await fs.stat(path)
        assert stat == Entry(**{**written.__dict__, "ctime": None})
        assert await fs.read(path) == b"hello"
        assert await fs.exists(path)
        assert not await fs.exists(f"{home}/missing")
        assert not await fs.exists(f"{path}/")
        assert (await fs.stat(home)).is_dir


def test_put_replaces_and_reports_created(server: Server, home: str) -> None:
    with client(server) as fs:
        first = fs.write(f"{home}/f", b"one")
        second = fs.write(f"{home}/f", b"two, longer")
        assert second.etag != first.etag and second.size == 11
        assert fs.read(f"{home}/f") == b"two, longer"
        with pytest.raises(IsADirectory):
            fs.write(home, b"x")
        with pytest.raises(ValueError):
            fs.write(f"{home}/d/", b"x")
        with pytest.raises(TypeError):
            fs.write(f"{home}/text", "not bytes")  # type: ignore[arg-type]


def test_write_streams_a_generator_and_a_file(server: Server, home: str, tmp_path: Path) -> None:
    chunk = os.urandom(256 * 1024)
    chunks = Chunks(chunk, 10)  # 2.5 MiB, more than the server's 1 MiB chunk
    source = tmp_path / "upload.bin"
    source.write_bytes(os.urandom(3 * MiB + 7))
    transport = Recording()
    with client(server, chunk_size=MiB, transport=transport) as fs:
        entry = fs.write(f"{home}/gen.bin", iter(chunks))
        assert chunks.taken == 10
        assert entry.size == 10 * len(chunk) and entry.etag == sha256(chunk * 10)
        put = transport.sent("PUT")[-1]
        assert put.headers.get("transfer-encoding") == "chunked"

        with ReadSizes(source) as handle:
            entry = fs.write(f"{home}/file.bin", handle, create_only=True, mode=0o600)
        assert handle.sizes and max(handle.sizes) == MiB  # read a chunk at a time
        assert entry.size == source.stat().st_size and entry.mode == 0o600
        assert entry.etag == sha256(source.read_bytes())
        post = transport.sent("POST")[-1]
        assert post.headers["content-length"] == str(source.stat().st_size)
        assert fs.read(f"{home}/file.bin") == source.read_bytes()


async def test_write_streams_async_sources(server: Server, home: str, tmp_path: Path) -> None:
    chunk = os.urandom(300 * 1024)

    async def generate() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield chunk

    source = tmp_path / "upload.bin"
    source.write_bytes(os.urandom(2 * MiB + 1))
    async with async_client(server, chunk_size=512 * 1024) as fs:
        entry = await fs.write(f"{home}/agen.bin", generate())
        assert entry.etag == sha256(chunk * 5)
        entry = await fs.write(f"{home}/sync-gen.bin", iter([b"a", bytearray(b"b"), b"c"]))
        assert entry.etag == sha256(b"abc")
        with ReadSizes(source) as handle:
            entry = await fs.write(f"{home}/file.bin", handle, mode=0o640)
        assert max(handle.sizes) == 512 * 1024
        assert entry.etag == sha256(source.read_bytes()) and entry.mode == 0o640
        assert await fs.read(f"{home}/file.bin") == source.read_bytes()


def test_stream_reads_chunks_and_ranges(server: Server, home: str) -> None:
    data = os.urandom(3 * MiB + 123)
    path = f"{home}/big.bin"
    with client(server) as fs:
        fs.write(path, data)
        with fs.stream(path, chunk_size=64 * 1024) as chunks:
            assert chunks.status == 200 and chunks.size == len(data)
            assert chunks.etag == sha256(data)
            pieces = list(chunks)
        assert max(len(p) for p in pieces) == 64 * 1024 and b"".join(pieces) == data

        with fs.stream(path, range=(MiB, 2 * MiB + 10)) as chunks:
            assert chunks.status == 206
            assert chunks.content_range == (MiB, 2 * MiB + 10, len(data))
            assert chunks.length == MiB + 11 and chunks.size == len(data)
            assert chunks.read() == data[MiB : 2 * MiB + 11]
        assert fs.read(path, range=3 * MiB) == data[3 * MiB :]  # start only
        assert fs.read(path, range=-100) == data[-100:]  # the last 100 bytes
        assert fs.read(path, range=(5, 5)) == data[5:6]
        with pytest.raises(RangeNotSatisfiable) as raised:
            fs.read(path, range=len(data))
        assert raised.value.size == len(data)
        with pytest.raises(ValueError):
            fs.read(path, range=(10, 5))
        with pytest.raises(IsADirectory), fs.stream(home):
            pass


async def test_stream_reads_chunks_and_ranges_async(server: Server, home: str) -> None:
    data = os.urandom(2 * MiB + 5)
    path = f"{home}/big.bin"
    async with async_client(server) as fs:
        await fs.write(path, data)
        async with fs.stream(path, chunk_size=100_000) as chunks:
            pieces = [piece async for piece in chunks]
        assert max(len(p) for p in pieces) == 100_000 and b"".join(pieces) == data
        async with fs.stream(path, range=(10, 20)) as chunks:
            assert chunks.content_range == (10, 20, len(data))
            assert await chunks.read() == data[10:21]
        assert await fs.read(path, range=MiB) == data[MiB:]
        with pytest.raises(RangeNotSatisfiable):
            await fs.read(path, range=(len(data) + 5, len(data) + 9))
        with pytest.raises(IsADirectory):
            await fs.read(home)


# --- conditional requests --------------------------------------------------------------


def test_conditional_writes_and_reads(server: Server, home: str) -> None:
    path = f"{home}/c.txt"
    with client(server) as fs:
        first = fs.write(path, b"v1", if_none_match="*")
        with pytest.raises(PreconditionFailed):
            fs.write(path, b"v2", if_none_match="*")
        assert first.etag is not None
        second = fs.write(path, b"v2", if_match=first.etag)
        with pytest.raises(PreconditionFailed):
            fs.write(path, b"v3", if_match=first.etag)  # a stale ETag
        with pytest.raises(PreconditionFailed):
            fs.write(f"{home}/absent", b"x", if_match=first.etag)
        assert second.etag is not None
        with pytest.raises(NotModified) as raised:
            fs.read(path, if_none_match=second.etag)
        assert raised.value.etag == second.etag and raised.value.status == 304
        assert fs.read(path, if_none_match=f'"{first.etag}"') == b"v2"

        assert fs.write(f"{home}/new", b"x", create_only=True).size == 1
        with pytest.raises(AlreadyExists):
            fs.write(f"{home}/new", b"replaced?", create_only=True)
        assert fs.read(f"{home}/new") == b"x"
        with pytest.raises(ValueError):
            fs.write(path, b"x", create_only=True, if_match=second.etag)


async def test_conditional_writes_and_reads_async(server: Server, home: str) -> None:
    path = f"{home}/c.txt"
    async with async_client(server) as fs:
        first = await fs.write(path, b"v1")
        assert first.etag is not None
        with pytest.raises(PreconditionFailed):
            await fs.write(path, b"v2", if_match="0" * 64)
        with pytest.raises(NotModified):
            await fs.read(path, if_none_match=first.etag)
        with pytest.raises(AlreadyExists):
            await fs.write(path, b"v2", create_only=True)


# --- directories -----------------------------------------------------------------------


def test_mkdir_like_mkdir_and_mkdir_p(server: Server, home: str) -> None:
    with client(server) as fs:
        with pytest.raises(NotFound):
            fs.mkdir(f"{home}/a/b")  # the parent is missing: nothing is created
        assert not fs.exists(home)
        created = fs.mkdir(f"{home}/a/b", parents=True, mode=0o750)
        assert created.is_dir and created.path == f"{home}/a/b" and created.mode == 0o750
        assert fs.stat(f"{home}/a").mode == 0o755
        with pytest.raises(AlreadyExists):
            fs.mkdir(f"{home}/a/b")
        assert fs.mkdir(f"{home}/a/b", parents=True).mode == 0o750  # mkdir -p: fine
        assert fs.mkdir(f"{home}/a/c").path == f"{home}/a/c"
        fs.write(f"{home}/file", b"x")
        with pytest.raises(AlreadyExists):
            fs.mkdir(f"{home}/file", parents=True)
        with pytest.raises(NotADirectory):
            fs.mkdir(f"{home}/file/sub")
        with pytest.raises(NotADirectory):
            fs.mkdir(f"{home}/file/sub", parents=True)
        with pytest.raises(AlreadyExists):
            fs.mkdir("/")
        assert fs.mkdir("/", parents=True).mode == 0o1777


async def test_mkdir_async(server: Server, home: str) -> None:
    async with async_client(server) as fs:
        with pytest.raises(NotFound):
            await fs.mkdir(f"{home}/a/b")
        assert (await fs.mkdir(f"{home}/a/b", parents=True)).is_dir
        with pytest.raises(AlreadyExists):
            await fs.mkdir(f"{home}/a")
        assert (await fs.mkdir(f"{home}/a/new", mode=0o700)).mode == 0o700


def test_list_follows_pages(server: Server, home: str) -> None:
    transport = Recording()
    with client(server, transport=transport) as fs:
        names = [f"f{i:02d}" for i in range(7)]
        for name in names:
            fs.write(f"{home}/{name}", name.encode())
        fs.write(f"{home}/sub/deep/x", b"x")
        listing = fs.list(home, page_size=3)
        assert not transport.sent("GET", "/v1/directories")  # lazily: nothing asked yet
        entries = list(listing)
        assert [e.name for e in entries] == [*names, "sub"]
        assert len(transport.sent("GET", "/v1/directories")) == 3
        assert entries[0].size == 3 and entries[0].etag == sha256(b"f00")
        assert entries[0].ctime is not None and entries[-1].is_dir

        everything = [e.path for e in fs.list(home, recursive=True, page_size=4)]
        assert everything == sorted(everything)
        assert f"{home}/sub/deep/x" in everything and len(everything) == 10
        shallow = [e.path for e in fs.list(home, recursive=True, max_depth=1)]
        assert f"{home}/sub/deep" in shallow and f"{home}/sub/deep/x" not in shallow
        with pytest.raises(NotFound):
            list(fs.list(f"{home}/absent"))
        with pytest.raises(NotADirectory):
            list(fs.list(f"{home}/f00"))
        with pytest.raises(ValueError):
            list(fs.list(home, max_depth=1))  # a depth without recursive


async def test_list_follows_pages_async(server: Server, home: str) -> None:
    transport = AsyncRecording()
    async with async_client(server, transport=transport) as fs:
        for i in range(5):
            await fs.write(f"{home}/f{i}", b"x")
        names = [entry.name async for entry in fs.list(home, page_size=2)]
        assert names == [f"f{i}" for i in range(5)]
        assert len(transport.sent("GET", "/v1/directories")) == 3
        with pytest.raises(NotFound):
            [entry async for entry in fs.list(f"{home}/absent")]


# --- namespace changes ------------------------------------------------------------------


def test_delete_move_rename_chmod(server: Server, home: str) -> None:
    with client(server) as fs:
        fs.write(f"{home}/src/a.txt", b"a")
        fs.write(f"{home}/src/sub/b.txt", b"b")
        moved = fs.move(f"{home}/src", f"{home}/dst/moved", create_parents=True)
        assert moved.path == f"{home}/dst/moved" and moved.is_dir
        assert fs.read(f"{home}/dst/moved/sub/b.txt") == b"b"
        assert not fs.exists(f"{home}/src")
        fs.write(f"{home}/other.txt", b"o")
        with pytest.raises(AlreadyExists):
            fs.move(f"{home}/other.txt", f"{home}/dst/moved/a.txt")
        replaced = fs.move(f"{home}/other.txt", f"{home}/dst/moved/a.txt", overwrite=True)
        assert replaced.etag == sha256(b"o")
        with pytest.raises(NotFound):
            fs.move(f"{home}/other.txt", f"{home}/x")

        renamed = fs.rename(f"{home}/dst/moved/a.txt", "renamed.txt")
        assert renamed.path == f"{home}/dst/moved/renamed.txt" and renamed.name == "renamed.txt"
        changed = fs.chmod(renamed.path, 0o600)
        assert changed.mode == 0o600 and fs.stat(renamed.path).mode == 0o600
        with pytest.raises(ValueError):
            fs.chmod(renamed.path, 0o10000)

        with pytest.raises(DirectoryNotEmpty):
            fs.delete(f"{home}/dst")
        fs.delete(renamed.path)
        assert not fs.exists(renamed.path)
        with pytest.raises(NotFound):
            fs.delete(renamed.path)
        fs.delete(f"{home}/dst", recursive=True)
        assert not fs.exists(f"{home}/dst")


async def test_delete_move_rename_chmod_async(server: Server, home: str) -> None:
    async with async_client(server) as fs:
        await fs.write(f"{home}/a.txt", b"a")
        assert (await fs.move(f"{home}/a.txt", f"{home}/b.txt")).path == f"{home}/b.txt"
        assert (await fs.rename(f"{home}/b.txt", "c.txt")).name == "c.txt"
        assert (await fs.chmod(f"{home}/c.txt", 0o640)).mode == 0o640
        await fs.mkdir(f"{home}/empty")
        await fs.delete(f"{home}/empty")
        with pytest.raises(DirectoryNotEmpty):
            await fs.delete(home)
        await fs.delete(home, recursive=True)
        assert not await fs.exists(home)


# --- links and system -------------------------------------------------------------------


def test_link_downloads_once(server: Server, home: str) -> None:
    transport = Recording()
    with client(server, transport=transport) as fs:
        fs.write(f"{home}/shared.txt", b"for you")
        link = fs.link(f"{home}/shared.txt", expiry_seconds=120)
        assert link.url.endswith(f"/download/{link.token}")
        assert timedelta(0) < link.expires_at - datetime.now(UTC) <= timedelta(seconds=121)
        assert fs.download(link) == b"for you"
        download = transport.sent("GET", "/download/")[-1]
        assert "authorization" not in download.headers  # a link needs no key: none is sent
        with pytest.raises(LinkUsed):
            fs.download(link.url)
        second = fs.link(f"{home}/shared.txt")
        with fs.download_stream(second.token, chunk_size=3) as chunks:
            assert list(chunks) == [b"for", b" yo", b"u"]
        with pytest.raises(IsADirectory):
            fs.link("/")
        with pytest.raises(NotFound):
            fs.link(f"{home}/absent")


async def test_link_downloads_once_async(server: Server, home: str) -> None:
    async with async_client(server) as fs:
        await fs.write(f"{home}/shared.txt", b"for you")
        link = await fs.link(f"{home}/shared.txt")
        assert await fs.download(link) == b"for you"
        with pytest.raises(LinkUsed):
            await fs.download(link)


def test_health_ready_and_cluster(server: Server) -> None:
    with client(server) as fs:
        assert fs.health()["status"] == "ok"
        assert fs.ready() is True


async def test_health_ready_async(server: Server) -> None:
    async with async_client(server) as fs:
        assert (await fs.health())["status"] == "ok"
        assert await fs.ready()


def test_paths_are_encoded_once(server: Server, home: str) -> None:
    with client(server) as fs:
        for name in ("a b", "50%", "q?x=1", "hash#tag", "plus+at@", "ünï"):
            entry = fs.write(f"{home}/{name}", name.encode())
            assert entry.name == name
            assert fs.read(f"{home}/{name}") == name.encode()
        assert sorted(e.name for e in fs.list(home)) == sorted(
            ["a b", "50%", "q?x=1", "hash#tag", "plus+at@", "ünï"]
        )


def test_client_closes_its_connections(server: Server) -> None:
    fs = client(server)
    with fs:
        fs.health()
    with pytest.raises(RuntimeError):
        fs.health()
