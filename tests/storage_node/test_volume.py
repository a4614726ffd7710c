"""The volume on its own: confined paths, atomic writes, ranged reads (no gRPC)."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from callfs_storage_node import volume as volume_module
from callfs_storage_node.volume import BATCH_BYTES, TEMP_PREFIX, Volume, VolumeUsage

from callfs.errors import (
    AlreadyExists,
    BadRequest,
    DirectoryNotEmpty,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    PreconditionFailed,
)
from tests.support.polling import wait_until

MiB = 1024 * 1024
T = TypeVar("T")


class SourceBroke(Exception):
    """The client's stream broke off."""


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def breaking(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    raise SourceBroke


async def read_all(volume: Volume, path: str, **kwargs: int) -> bytes:
    return b"".join([chunk async for chunk in await volume.read(path, **kwargs)])


def pattern(size: int) -> bytes:
    return bytes(index * 7 % 251 for index in range(size))


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    root = tmp_path / "volume"
    root.mkdir()
    return Volume(root)


def temp_files(volume: Volume) -> list[Path]:
    return list(Path(volume.root).rglob(f"{TEMP_PREFIX}*"))


class CountingPool(ThreadPoolExecutor):
    """A thread pool that counts the calls given to it."""

    submitted = 0

    def submit(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> Future[T]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def sidecar_bytes(volume: Volume) -> int:
    """What the checksum sidecars take, counted in the volume's usage."""
    return sum(path.stat().st_size for path in Path(volume.root).rglob("*.sums"))


async def test_write_then_read_returns_the_bytes_and_their_sha256(volume: Volume) -> None:
    data = pattern(2 * BATCH_BYTES + 12345)
    parts = [data[start : start + MiB] for start in range(0, len(data), MiB)]
    stored = await volume.write("a/b/file", chunks_of(*parts), create_parents=True)
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(volume, "a/b/file") == data
    assert temp_files(volume) == []


async def test_empty_write_stores_an_empty_file(volume: Volume) -> None:
    stored = await volume.write("empty", chunks_of())
    assert stored.size == 0
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read_all(volume, "empty") == b""


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [(0, None, slice(0, None)), (10, 5, slice(10, 15)), (95, 50, slice(95, 100)),
     (100, None, slice(100, 100)), (250, 3, slice(0, 0)), (3, 0, slice(0, 0))],
)  # fmt: skip
async def test_ranged_read_returns_exactly_the_range(
    volume: Volume, offset: int, length: int | None, expected: slice
) -> None:
    data = pattern(100)
    await volume.write("f", chunks_of(data))
    kwargs = {"offset": offset} if length is None else {"offset": offset, "length": length}
    assert await read_all(volume, "f", **kwargs) == data[expected]


async def test_read_chunks_are_no_larger_than_asked(volume: Volume) -> None:
    data = pattern(10_000)
    await volume.write("f", chunks_of(data))
    chunks = [chunk async for chunk in await volume.read("f", offset=1, chunk_size=4096)]
    assert [len(chunk) for chunk in chunks] == [4096, 4096, 1807]
    assert b"".join(chunks) == data[1:]


async def test_negative_range_is_bad_request(volume: Volume) -> None:
    await volume.write("f", chunks_of(b"x"))
    with pytest.raises(BadRequest):
        await volume.read("f", offset=-1)


@pytest.mark.parametrize(
    "path", ["../x", "a/../../x", "a/..", "/etc/passwd", "a\0b", "", ".", ".callfs-tmp-x"]
)
async def test_paths_that_leave_the_volume_or_name_its_root_are_invalid(
    volume: Volume, path: str
) -> None:
    with pytest.raises(InvalidPath):
        await volume.write(path, chunks_of(b"x"), create_parents=True)
    with pytest.raises(InvalidPath):
        await volume.read(path)
    with pytest.raises(InvalidPath):
        await volume.delete(path, recursive=True)


async def test_a_symlink_to_a_file_outside_is_invalid(volume: Volume, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    (Path(volume.root) / "link").symlink_to(outside)
    with pytest.raises(InvalidPath):
        await volume.read("link")
    with pytest.raises(InvalidPath):
        await volume.write("link", chunks_of(b"overwritten"))
    assert outside.read_bytes() == b"secret"


async def test_a_symlinked_directory_outside_is_invalid(volume: Volume, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (Path(volume.root) / "dir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidPath):
        await volume.write("dir/new", chunks_of(b"x"), create_parents=True)
    assert list(outside.iterdir()) == []


async def test_a_symlink_inside_the_volume_is_followed(volume: Volume) -> None:
    await volume.write("real", chunks_of(b"inside"))
    (Path(volume.root) / "alias").symlink_to(Path(volume.root) / "real")
    assert await read_all(volume, "alias") == b"inside"


async def test_overwrite_replaces_content_while_an_open_read_keeps_the_old(volume: Volume) -> None:
    old = pattern(3 * BATCH_BYTES)
    await volume.write("f", chunks_of(old))
    stream = await volume.read("f", chunk_size=MiB)
    first = await anext(stream)
    await volume.write("f", chunks_of(b"new content"))
    rest = b"".join([chunk async for chunk in stream])
    assert first + rest == old
    assert await read_all(volume, "f") == b"new content"


async def test_write_without_overwrite_on_a_file_is_already_exists(volume: Volume) -> None:
    await volume.write("f", chunks_of(b"old"))
    with pytest.raises(AlreadyExists):
        await volume.write("f", chunks_of(b"new"), overwrite=False)
    assert await read_all(volume, "f") == b"old"
    assert temp_files(volume) == []


async def test_write_without_overwrite_on_a_free_path_stores_it(volume: Volume) -> None:
    await volume.write("f", chunks_of(b"only"), overwrite=False)
    assert await read_all(volume, "f") == b"only"
    assert temp_files(volume) == []


async def test_write_into_a_missing_directory_needs_create_parents(volume: Volume) -> None:
    with pytest.raises(NotFound):
        await volume.write("no/such/f", chunks_of(b"x"))
    await volume.write("no/such/f", chunks_of(b"x"), create_parents=True)
    assert (Path(volume.root) / "no" / "such").is_dir()


async def test_write_below_a_file_is_not_a_directory(volume: Volume) -> None:
    await volume.write("f", chunks_of(b"x"))
    with pytest.raises(NotADirectory):
        await volume.write("f/g", chunks_of(b"x"), create_parents=True)
    with pytest.raises(NotADirectory):
        await volume.write("f/g", chunks_of(b"x"))


async def test_write_onto_a_directory_is_is_a_directory(volume: Volume) -> None:
    (Path(volume.root) / "d").mkdir()
    with pytest.raises(IsADirectory):
        await volume.write("d", chunks_of(b"x"))
    with pytest.raises(IsADirectory):
        await volume.read("d")


async def test_a_source_that_breaks_off_leaves_the_old_content_and_no_temp_file(
    volume: Volume,
) -> None:
    await volume.write("f", chunks_of(b"old"))
    parts = [pattern(MiB)] * 9
    with pytest.raises(SourceBroke):
        await volume.write("f", breaking(parts))
    assert await read_all(volume, "f") == b"old"
    assert temp_files(volume) == []


async def test_a_cancelled_write_leaves_no_temp_file(volume: Volume) -> None:
    arrived = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield pattern(MiB)
        arrived.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(volume.write("f", stalling()))
    await arrived.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert temp_files(volume) == []
    assert not (Path(volume.root) / "f").exists()


async def test_a_write_cancelled_while_its_cleanup_waits_for_a_thread_still_cleans_up(
    volume: Volume,
) -> None:
    # What gRPC does to an upload that breaks off: the stream ends early, and the
    # handler is cancelled while it waits to remove the temp file, a thread to do it
    # not yet free.
    pool = CountingPool(max_workers=1)
    asyncio.get_running_loop().set_default_executor(pool)
    breaks = asyncio.Event()

    async def breaking_off() -> AsyncIterator[bytes]:
        yield pattern(MiB)
        yield pattern(MiB)
        await breaks.wait()
        raise SourceBroke

    task = asyncio.create_task(volume.write("f", breaking_off()))
    await wait_until(lambda: bool(temp_files(volume)), what="the temp file was made")
    gate = threading.Event()
    busy = asyncio.get_running_loop().run_in_executor(None, gate.wait)
    submitted = pool.submitted
    breaks.set()
    await wait_until(lambda: pool.submitted > submitted, what="the cleanup was queued")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await busy
    await wait_until(lambda: not temp_files(volume), what="the temp file was removed")
    assert not (Path(volume.root) / "f").exists()


async def test_a_size_other_than_expected_is_precondition_failed(volume: Volume) -> None:
    with pytest.raises(PreconditionFailed):
        await volume.write("short", chunks_of(b"abc"), expected_size=4)
    with pytest.raises(PreconditionFailed):
        await volume.write("long", chunks_of(b"abcde"), expected_size=4)
    stored = await volume.write("exact", chunks_of(b"ab", b"cd"), expected_size=4)
    assert stored.size == 4
    assert sorted(p.name for p in Path(volume.root).iterdir()) == ["exact", "exact.sums"]


async def test_written_files_get_the_mode_asked_for(volume: Volume) -> None:
    await volume.write("private", chunks_of(b"x"))
    await volume.write("shared", chunks_of(b"x"), mode=0o644)
    root = Path(volume.root)
    assert stat.S_IMODE((root / "private").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "shared").stat().st_mode) == 0o644


async def test_delete_removes_files_and_reports_absence(volume: Volume) -> None:
    await volume.write("f", chunks_of(b"x"))
    assert await volume.delete("f") is True
    assert not (Path(volume.root) / "f").exists()
    assert await volume.delete("f", missing_ok=True) is False
    with pytest.raises(NotFound):
        await volume.delete("f")


async def test_delete_of_a_full_directory_needs_recursive(volume: Volume) -> None:
    await volume.write("d/e/f", chunks_of(b"x"), create_parents=True)
    with pytest.raises(DirectoryNotEmpty):
        await volume.delete("d")
    assert await volume.delete("d", recursive=True) is True
    assert not (Path(volume.root) / "d").exists()
    (Path(volume.root) / "empty").mkdir()
    assert await volume.delete("empty") is True


async def test_usage_counts_the_bytes_of_files_under_the_root(volume: Volume) -> None:
    await volume.write("a", chunks_of(pattern(1000)))
    await volume.write("d/b", chunks_of(pattern(234)), create_parents=True)
    usage = await volume.usage()
    assert usage.used == 1234 + sidecar_bytes(volume)
    assert usage.total > 0
    assert 0 <= usage.free <= usage.total


async def test_concurrent_usage_calls_share_one_answer(volume: Volume) -> None:
    await volume.write("a", chunks_of(pattern(10)))
    answers = await asyncio.gather(*(volume.usage() for _ in range(5)))
    assert {answer.used for answer in answers} == {10 + sidecar_bytes(volume)}


async def test_space_answers_from_the_last_walk_while_a_slow_one_runs(
    volume: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    await volume.write("a", chunks_of(pattern(10)))
    first = await volume.space()
    assert first.used == 10 + sidecar_bytes(volume)
    assert 0 < first.free <= first.total
    walk_may_end = threading.Event()
    measure = volume._measure

    def slow_walk() -> VolumeUsage:
        walk_may_end.wait()
        return measure()

    monkeypatch.setattr(volume, "_measure", slow_walk)
    await volume.write("b", chunks_of(pattern(20)))
    try:
        # The guard only turns a hang into a failure; the answer comes at once.
        second = await asyncio.wait_for(volume.space(), timeout=60)
    finally:
        walk_may_end.set()
    assert second.used == first.used
    assert 0 < second.free <= second.total
    # The walk that call started counts the new file.
    assert (await volume.usage()).used == 30 + sidecar_bytes(volume)


@pytest.mark.parametrize(("walk_seconds", "reused_for"), [(2.0, 18.0), (0.5, 0.0)])
async def test_a_slow_walk_is_reused_for_nine_times_as_long_as_it_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, walk_seconds: float, reused_for: float
) -> None:
    now = [1000.0]
    volume = Volume(tmp_path, monotonic=lambda: now[0])  # usage_max_age 0: always walk
    walks = 0
    measure = volume._measure

    def timed_walk() -> VolumeUsage:
        nonlocal walks
        walks += 1
        now[0] += walk_seconds
        return measure()

    monkeypatch.setattr(volume, "_measure", timed_walk)
    await volume.usage()
    if reused_for:
        now[0] += reused_for - 1
        await volume.usage()
        await volume.space()
        assert walks == 1
    now[0] += 1
    await volume.usage()
    assert walks == 2


async def test_sweep_removes_only_stale_temp_files(volume: Volume) -> None:
    root = Path(volume.root)
    (root / "d").mkdir()
    stale = root / "d" / f"{TEMP_PREFIX}stale"
    fresh = root / f"{TEMP_PREFIX}fresh"
    kept = root / "d" / "file"
    for path in (stale, fresh, kept):
        path.write_bytes(b"x")
    os.utime(stale, (1_000_000, 1_000_000))
    os.utime(kept, (1_000_000, 1_000_000))
    assert await volume.sweep_temp_files(3600) == 1
    assert not stale.exists()
    assert fresh.exists()
    assert kept.exists()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_read_closed_early_releases_its_file(volume: Volume) -> None:
    await volume.write("f", chunks_of(pattern(3 * BATCH_BYTES)))
    before = open_descriptors()
    stream = await volume.read("f", chunk_size=MiB)
    await anext(stream)
    await stream.aclose()
    assert open_descriptors() == before


async def listed(volume: Volume, batch_size: int = 1000) -> list[list[tuple[str, int, int]]]:
    return [
        [(f.key, f.size, f.mtime_ns) for f in batch]
        async for batch in volume.list_files(batch_size=batch_size)
    ]


async def test_list_files_walks_the_tree_without_temp_files_or_symlinks(
    volume: Volume, tmp_path: Path
) -> None:
    root = Path(volume.root)
    await volume.write("ab/cd/object", chunks_of(b"12345"), create_parents=True)
    await volume.write("top", chunks_of(b"x"))
    (root / "ab" / "cd" / f"{TEMP_PREFIX}upload").write_bytes(b"in flight")
    (root / "empty").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "link-to-dir").symlink_to(outside)
    (root / "link-to-file").symlink_to(outside / "secret")
    os.utime(root / "ab" / "cd" / "object", ns=(1_000_000_000, 2_000_000_000))

    files = {key: (size, mtime) for batch in await listed(volume) for key, size, mtime in batch}

    assert set(files) == {"ab/cd/object", "top"}
    assert files["ab/cd/object"] == (5, 2_000_000_000)
    assert files["top"] == (1, (root / "top").stat().st_mtime_ns)


async def test_list_files_comes_in_batches_of_the_asked_size(volume: Volume) -> None:
    for index in range(7):
        await volume.write(f"d{index % 2}/f{index}", chunks_of(b"x"), create_parents=True)
    batches = await listed(volume, batch_size=3)
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert sorted(key for batch in batches for key, _, _ in batch) == sorted(
        f"d{index % 2}/f{index}" for index in range(7)
    )


async def test_an_empty_volume_lists_nothing(volume: Volume) -> None:
    assert await listed(volume) == []


async def test_a_listing_closed_early_releases_its_directory(volume: Volume) -> None:
    for index in range(5):
        await volume.write(f"f{index}", chunks_of(b"x"))
    before = open_descriptors()
    stream = volume.list_files(batch_size=2)
    assert len(await anext(stream)) == 2
    await stream.aclose()
    assert open_descriptors() == before


async def test_concurrent_writes_creating_the_same_parents_all_succeed(volume: Volume) -> None:
    # Each round's writers race to make the same missing folders: one that finds a
    # folder made between its two looks must take it, not call it a file.
    for round_ in range(60):
        paths = [f"r{round_}/a/b/f{n}" for n in range(12)]
        await asyncio.gather(
            *(volume.write(path, chunks_of(path.encode()), create_parents=True) for path in paths)
        )
        for path in paths:
            assert await read_all(volume, path) == path.encode()


RangeSync = Callable[[int, int, int, int], int]


def long_write_volume(
    root: Path, monkeypatch: pytest.MonkeyPatch, range_sync: RangeSync, fsyncs: list[str]
) -> Volume:
    """A volume whose long writes go out every other batch through ``range_sync`` (for
    ``sync_file_range``), its fsyncs noted in ``fsyncs``."""
    monkeypatch.setattr(volume_module, "_sync_file_range", range_sync)
    monkeypatch.setattr(volume_module, "SYNC_BYTES", 2 * BATCH_BYTES)
    root.mkdir()
    return Volume(root, observe_fsync=lambda kind, _seconds: fsyncs.append(kind))


def refusing(error: int) -> RangeSync:
    """A ``sync_file_range`` that fails with ``error``."""

    def refuse(fd: int, offset: int, count: int, flags: int) -> int:
        ctypes.set_errno(error)
        return -1

    return refuse


LONG = pattern(9 * BATCH_BYTES)


async def test_a_long_write_has_its_bytes_written_out_as_it_goes_and_is_synced_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[int, int, int]] = []
    real = volume_module._sync_file_range
    assert real is not None  # Linux: the C library has it

    def recorded(fd: int, offset: int, count: int, flags: int) -> int:
        started.append((offset, count, flags))
        return real(fd, offset, count, flags)

    fsyncs: list[str] = []
    watched = long_write_volume(tmp_path / "watched", monkeypatch, recorded, fsyncs)
    stored = await watched.write("big", chunks_of(*_split(LONG, 1024 * 1024)))
    assert stored.sha256 == hashlib.sha256(LONG).hexdigest()
    assert await read_all(watched, "big") == LONG
    # Every other batch: wait for the last window, start the next one (whole file).
    assert started == [(0, 0, 3)] * 4
    # Durable all the same: the file, its sidecar and their directory synced at the end.
    assert fsyncs.count("file") == 2 and fsyncs.count("directory") >= 1


async def test_where_sync_file_range_is_refused_a_long_write_syncs_its_data_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[str] = []
    watched = long_write_volume(tmp_path / "v", monkeypatch, refusing(errno.ENOSYS), fsyncs)
    await watched.write("big", chunks_of(*_split(LONG, 1024 * 1024)))
    assert await read_all(watched, "big") == LONG
    assert fsyncs.count("file") == 4 + 2  # fdatasync as it goes, then the file and sidecar


async def test_a_write_whose_data_fails_to_go_out_fails_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = long_write_volume(tmp_path / "v", monkeypatch, refusing(errno.EIO), [])
    with pytest.raises(OSError) as failed:
        await failing.write("big", chunks_of(*_split(LONG, 1024 * 1024)))
    assert failed.value.errno == errno.EIO
    assert list((tmp_path / "v").iterdir()) == []


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]
