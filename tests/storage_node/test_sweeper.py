"""Sweeping the temp files interrupted uploads leave, on a volume with a fake clock."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from callfs_storage_node import sweeper
from callfs_storage_node.volume import SMALL_WRITE_BYTES, TEMP_PREFIX, Volume

from tests.support.polling import wait_until

GRACE = 600.0


class Clock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def volume(tmp_path: Path, clock: Clock) -> Volume:
    root = tmp_path / "volume"
    root.mkdir()
    return Volume(root, clock=clock)


def temp_files(volume: Volume) -> set[Path]:
    return set(Path(volume.root).rglob(f"{TEMP_PREFIX}*"))


def leftover(volume: Volume, name: str, *, untouched_for: float, clock: Clock) -> Path:
    """A temp file no write holds, last modified ``untouched_for`` seconds before ``clock``."""
    path = Path(volume.root) / f"{TEMP_PREFIX}{name}"
    path.write_bytes(b"part of an upload")
    modified = clock() - untouched_for
    os.utime(path, (modified, modified))
    return path


# A first chunk past the bound of a small write (held in memory, never in a temp file).
FIRST = b"first " * (SMALL_WRITE_BYTES // 6 + 1)


class PausedUpload:
    """A write whose client sent a first chunk (``FIRST``) and then waits for ``resume``."""

    def __init__(self, volume: Volume, path: str) -> None:
        self.resume = asyncio.Event()
        self.task = asyncio.create_task(volume.write(path, self._chunks()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield FIRST
        await self.resume.wait()
        yield b"last"

    async def finish(self) -> None:
        self.resume.set()
        await self.task


async def in_flight_temp(volume: Volume) -> Path:
    await wait_until(lambda: bool(temp_files(volume)), what="the write made its temp file")
    (temp,) = temp_files(volume)
    return temp


async def test_a_sweep_removes_an_old_leftover_but_not_the_temp_file_of_a_write_in_flight(
    volume: Volume, clock: Clock
) -> None:
    upload = PausedUpload(volume, "f")
    fresh = await in_flight_temp(volume)
    old = leftover(volume, "old", untouched_for=GRACE + 1, clock=clock)
    assert await volume.sweep_temp_files(GRACE) == 1
    assert not old.exists()
    assert fresh.exists()
    await upload.finish()
    assert (Path(volume.root) / "f").read_bytes() == FIRST + b"last"


async def test_a_leftover_is_kept_until_it_is_untouched_for_longer_than_the_grace(
    volume: Volume, clock: Clock
) -> None:
    recent = leftover(volume, "recent", untouched_for=0, clock=clock)
    clock.advance(GRACE - 1)
    assert await volume.sweep_temp_files(GRACE) == 0
    assert recent.exists()
    clock.advance(2)
    assert await volume.sweep_temp_files(GRACE) == 1
    assert not recent.exists()


async def test_a_write_paused_longer_than_the_grace_keeps_its_temp_file(
    volume: Volume, clock: Clock
) -> None:
    upload = PausedUpload(volume, "f")
    temp = await in_flight_temp(volume)
    clock.advance(10 * GRACE)
    assert await volume.sweep_temp_files(GRACE) == 0
    assert temp.exists()
    await upload.finish()
    assert (Path(volume.root) / "f").read_bytes() == FIRST + b"last"
    assert temp_files(volume) == set()


async def test_sweeping_at_start_up_removes_every_leftover_however_fresh(
    volume: Volume, clock: Clock
) -> None:
    (Path(volume.root) / "d").mkdir()
    nested = Path(volume.root) / "d" / f"{TEMP_PREFIX}nested"
    nested.write_bytes(b"x")
    fresh = leftover(volume, "fresh", untouched_for=0, clock=clock)
    stored = Path(volume.root) / "d" / "stored"
    stored.write_bytes(b"kept")
    upload = PausedUpload(volume, "f")
    await wait_until(lambda: len(temp_files(volume)) == 3, what="the write made its temp file")
    (in_flight,) = temp_files(volume) - {nested, fresh}
    await sweeper.sweep_all(volume)
    assert temp_files(volume) == {in_flight}
    assert stored.read_bytes() == b"kept"
    await upload.finish()


async def test_the_background_sweeper_removes_leftovers_once_past_the_grace(
    volume: Volume, clock: Clock
) -> None:
    old = leftover(volume, "old", untouched_for=GRACE + 1, clock=clock)
    young = leftover(volume, "young", untouched_for=GRACE / 2, clock=clock)
    async with sweeper.running(volume, grace=GRACE, interval=0.01):
        await wait_until(lambda: not old.exists(), what="the old leftover was swept")
        assert young.exists()
        clock.advance(GRACE)
        await wait_until(lambda: not young.exists(), what="the young leftover was swept")


@pytest.mark.parametrize("size", [1, SMALL_WRITE_BYTES + 1], ids=["small", "streamed"])
async def test_a_write_cancelled_while_its_temp_file_is_made_leaves_none(
    volume: Volume, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    entered, release, made = threading.Event(), threading.Event(), threading.Event()
    create = volume._create_temp

    def slow_create(*args: Any) -> Any:
        entered.set()
        release.wait(10)
        try:
            return create(*args)
        finally:
            made.set()

    async def one_chunk() -> AsyncIterator[bytes]:
        yield b"x" * size

    monkeypatch.setattr(volume, "_create_temp", slow_create)
    writing = asyncio.create_task(volume.write("f", one_chunk()))
    await wait_until(entered.is_set, what="the temp file is being made")
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    release.set()
    await wait_until(made.is_set, what="the temp file was made")
    await wait_until(lambda: not temp_files(volume), what="the abandoned temp file was removed")
    assert not (Path(volume.root) / "f").exists()
