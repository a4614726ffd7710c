"""Small writes in one hop to a worker thread: the same bytes, sums, errors and
clean-up as a streamed write, on real files.

A hop is counted as a call of ``asyncio.to_thread``, through a counting wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import resource
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from callfs_storage_node import checksums
from callfs_storage_node.volume import SMALL_WRITE_BYTES, TEMP_PREFIX, Stored, Volume

from callfs.errors import (
    AlreadyExists,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    PreconditionFailed,
)
from callfs.storage.v1 import storage_pb2
from tests.storage_node.conftest import METADATA, RunningNode

T = TypeVar("T")
KiB = 1024
MiB = 1024 * KiB
BOUND = SMALL_WRITE_BYTES
# A body of each kind: written in one hop, and streamed.
SMALL, LARGE = 4 * KiB, BOUND + 1


class SourceBroke(Exception):
    """The client's stream broke off."""


def pattern(size: int) -> bytes:
    return bytes(index * 7 % 251 for index in range(size))


def parts_of(data: bytes, size: int = 64 * KiB) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


async def chunks_of(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def breaking(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    raise SourceBroke


async def read_all(volume: Volume, path: str) -> bytes:
    return b"".join([chunk async for chunk in await volume.read(path)])


def leftovers(volume: Volume) -> list[str]:
    """Temp files (and their sidecars) anywhere under the root."""
    return sorted(str(path) for path in Path(volume.root).rglob(f"{TEMP_PREFIX}*"))


def new_volume(root: Path, **options: Any) -> Volume:
    root.mkdir()
    return Volume(root, **options)


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    return new_volume(tmp_path / "volume")


@pytest.fixture
def streaming(tmp_path: Path) -> Volume:
    """A volume that streams every body: no write is small to it."""
    return new_volume(tmp_path / "streaming", small_write_bytes=-1)


class Hops:
    """The functions handed to ``asyncio.to_thread``, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def take(self) -> list[str]:
        taken, self.calls = self.calls, []
        return taken


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Hops:
    counted = Hops()
    to_thread = asyncio.to_thread

    async def counting(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        counted.calls.append(getattr(func, "__qualname__", repr(func)))
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    return counted


# --- one hop -----------------------------------------------------------------------------


async def test_a_small_write_read_and_delete_take_one_hop_each(volume: Volume, hops: Hops) -> None:
    data = pattern(4 * KiB)
    await volume.write("a/b/new", chunks_of([data]), create_parents=True)
    assert len(hops.take()) == 1
    await volume.write("a/b/new", chunks_of(parts_of(data, KiB)))  # an overwrite
    assert len(hops.take()) == 1
    await volume.write("a/b/other", chunks_of([data]), overwrite=False, expected_size=len(data))
    assert len(hops.take()) == 1
    assert await read_all(volume, "a/b/new") == data
    assert len(hops.take()) == 1
    assert await volume.delete("a/b/new")
    assert len(hops.take()) == 1


async def test_an_empty_write_takes_one_hop(volume: Volume, hops: Hops) -> None:
    stored = await volume.write("empty", chunks_of([b"", b""]))
    assert len(hops.take()) == 1
    assert stored == Stored(0, hashlib.sha256().hexdigest())
    assert (Path(volume.root) / "empty").read_bytes() == b""
    assert (Path(volume.root) / "empty.sums").exists()


async def test_a_small_write_over_grpc_takes_one_hop_on_the_node(
    node: RunningNode, stub: Any, hops: Hops
) -> None:
    data = pattern(4 * KiB)
    call = stub.Write(metadata=METADATA)
    await call.write(
        storage_pb2.WriteRequest(header=storage_pb2.WriteHeader(path="ab/f", create_parents=True))
    )
    await call.write(storage_pb2.WriteRequest(chunk=data))
    await call.write(storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=len(data))))
    await call.done_writing()
    response = await call
    assert (response.size, response.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert len(hops.take()) == 1
    request = storage_pb2.ReadRequest(path="ab/f")
    read = [response.chunk async for response in stub.Read(request, metadata=METADATA)]
    assert b"".join(read) == data
    assert len(hops.take()) == 1


# --- the same results as a streamed write --------------------------------------------------


@pytest.mark.parametrize(
    ("size", "hops_taken"),
    [(BOUND - 1, 1), (BOUND, 1), (BOUND + 1, 2), (BOUND + 300 * KiB, 2)],
    ids=["just-under", "at", "just-over", "over"],
)
async def test_bodies_around_the_bound_store_what_a_streamed_write_stores(
    volume: Volume, streaming: Volume, hops: Hops, size: int, hops_taken: int
) -> None:
    data = pattern(size)
    # Chunks that do not line up with the bound or the checksum blocks.
    parts = parts_of(data, 100 * KiB + 3)
    stored = await volume.write("d/f", chunks_of(parts), create_parents=True, mode=0o640)
    assert len(hops.take()) == hops_taken
    streamed = await streaming.write("d/f", chunks_of(parts), create_parents=True, mode=0o640)
    assert stored == streamed == Stored(size, hashlib.sha256(data).hexdigest())
    blocks = checksums.BlockSums()
    blocks.update(data)
    for each in (volume, streaming):
        written = Path(each.root) / "d" / "f"
        assert written.read_bytes() == data
        assert (written.stat().st_mode & 0o777) == 0o640
        assert (Path(each.root) / "d" / "f.sums").read_bytes() == blocks.encode()
        assert await read_all(each, "d/f") == data
        assert leftovers(each) == []


async def test_a_larger_bound_writes_several_checksum_blocks_in_one_hop(
    tmp_path: Path, hops: Hops
) -> None:
    volume = new_volume(tmp_path / "wide", small_write_bytes=3 * MiB)
    data = pattern(2 * MiB + 12345)
    stored = await volume.write("f", chunks_of(parts_of(data, 300_000)))
    assert len(hops.take()) == 1
    assert stored == Stored(len(data), hashlib.sha256(data).hexdigest())
    blocks = checksums.BlockSums()
    blocks.update(data)
    assert (Path(volume.root) / "f.sums").read_bytes() == blocks.encode()
    assert await read_all(volume, "f") == data


async def test_an_overwrite_replaces_the_file_and_its_sidecar(volume: Volume) -> None:
    await volume.write("f", chunks_of([pattern(LARGE)]))
    stored = await volume.write("f", chunks_of([b"small now"]))
    assert stored.size == 9
    assert await read_all(volume, "f") == b"small now"
    blocks = checksums.BlockSums()
    blocks.update(b"small now")
    assert (Path(volume.root) / "f.sums").read_bytes() == blocks.encode()
    assert leftovers(volume) == []


# --- the same errors -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "large"])
async def test_both_paths_map_errors_alike_and_leave_nothing(volume: Volume, size: int) -> None:
    body = pattern(size)
    (Path(volume.root) / "dir").mkdir()
    await volume.write("file", chunks_of([b"old"]))
    cases: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (InvalidPath, "../outside", {}),
        (InvalidPath, f"{TEMP_PREFIX}x", {}),
        (InvalidPath, "x.sums", {}),
        (NotFound, "missing/f", {}),
        (NotADirectory, "file/f", {}),
        (NotADirectory, "file/f", {"create_parents": True}),
        (IsADirectory, "dir", {}),
        (AlreadyExists, "file", {"overwrite": False}),
        (PreconditionFailed, "sized", {"expected_size": size + 1}),
        (PreconditionFailed, "sized", {"expected_size": size - 1}),
    ]
    for error, path, options in cases:
        with pytest.raises(error):
            await volume.write(path, chunks_of(parts_of(body)), **options)
    assert await read_all(volume, "file") == b"old"
    assert sorted(p.name for p in Path(volume.root).iterdir()) == ["dir", "file", "file.sums"]
    assert leftovers(volume) == []


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "large"])
async def test_a_bad_path_is_reported_before_a_broken_stream(volume: Volume, size: int) -> None:
    (Path(volume.root) / "dir").mkdir()
    with pytest.raises(InvalidPath):
        await volume.write("../outside", breaking([pattern(size)]))
    with pytest.raises(IsADirectory):
        await volume.write("dir", breaking([pattern(size)]))
    assert leftovers(volume) == []


# --- failures leave the old content and no temp file -----------------------------------------


@pytest.mark.parametrize(
    "parts",
    [[b"abc"], [], parts_of(pattern(BOUND)), parts_of(pattern(BOUND + 512 * KiB))],
    ids=["small", "nothing", "at-the-bound", "large"],
)
async def test_a_stream_that_breaks_off_leaves_the_old_content_and_no_temp_file(
    volume: Volume, parts: list[bytes]
) -> None:
    await volume.write("f", chunks_of([b"old"]))
    with pytest.raises(SourceBroke):
        await volume.write("f", breaking(parts))
    with pytest.raises(SourceBroke):
        await volume.write("new", breaking(parts))
    assert await read_all(volume, "f") == b"old"
    assert sorted(p.name for p in Path(volume.root).iterdir()) == ["f", "f.sums"]


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files this process writes may not grow past ``limit`` bytes (EFBIG past it;
    Python ignores SIGXFSZ).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "large"])
async def test_a_write_that_fails_on_disk_leaves_the_old_content_and_no_temp_file(
    volume: Volume, size: int
) -> None:
    await volume.write("f", chunks_of([b"old"]))
    with file_size_limit(1024), pytest.raises(OSError) as failed:
        await volume.write("f", chunks_of(parts_of(pattern(size))))
    assert failed.value.errno == errno.EFBIG
    assert await read_all(volume, "f") == b"old"
    assert sorted(p.name for p in Path(volume.root).iterdir()) == ["f", "f.sums"]


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "large"])
async def test_a_write_that_fails_to_publish_its_sidecar_leaves_no_temp_file(
    volume: Volume, size: int
) -> None:
    # Something that is not a sidecar is in the sidecar's place: the last step fails.
    os.mkdir(Path(volume.root) / "f.sums")
    with pytest.raises(OSError):
        await volume.write("f", chunks_of(parts_of(pattern(size))))
    assert sorted(p.name for p in Path(volume.root).iterdir()) == ["f.sums"]


async def test_a_sweep_while_a_small_write_commits_keeps_its_temp_file(
    volume: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    swept: list[int] = []
    commit = volume._commit

    def sweeping_commit(*args: Any) -> None:
        # In the write's own thread, its temp file there: a sweep of every leftover.
        assert len(leftovers(volume)) == 1
        swept.append(volume._sweep(None))
        commit(*args)

    monkeypatch.setattr(volume, "_commit", sweeping_commit)
    data = pattern(SMALL)
    assert (await volume.write("f", chunks_of([data]))).size == len(data)
    assert swept == [0]
    assert (Path(volume.root) / "f").read_bytes() == data
    assert leftovers(volume) == []
