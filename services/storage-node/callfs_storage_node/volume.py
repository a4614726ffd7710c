"""One volume directory: confined paths, atomic streamed writes, ranged streamed reads.

Every path is relative to the root and can never leave it, not even through a
symlink. Blocking file I/O runs in worker threads, a few chunks per hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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

logger = logging.getLogger(__name__)

T = TypeVar("T")

TEMP_PREFIX = ".callfs-tmp-"
DEFAULT_CHUNK_SIZE = 1024 * 1024
DEFAULT_LIST_BATCH = 1000
DEFAULT_FILE_MODE = 0o600
DEFAULT_DIR_MODE = 0o755
# Bytes moved per hop to a worker thread: large enough that the hop is cheap
# next to the I/O, small enough to keep memory per stream bounded.
BATCH_BYTES = 4 * 1024 * 1024
# A long write syncs as it goes, so the final fsync (the caller waits on it) stays short.
SYNC_BYTES = 64 * 1024 * 1024
_LINK_UNSUPPORTED = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})


@dataclass(frozen=True)
class Stored:
    """What a finished write reports: size and SHA-256 (hex)."""

    size: int
    sha256: str


@dataclass(frozen=True)
class FileStat:
    """One path's kind, size, mode bits and modification time."""

    exists: bool
    is_dir: bool = False
    size: int = 0
    mode: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class ListedFile:
    """One stored file: its ``/``-separated path under the root, size and mtime."""

    key: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class VolumeUsage:
    """Bytes held by the files under the root, and free and total on its filesystem."""

    used: int
    free: int
    total: int


class _OpenFile:
    """A descriptor shared with worker threads: closed once, never during a call."""

    def __init__(self, fd: int, temp: str | None = None) -> None:
        self.fd = fd
        self.temp = temp
        self._lock = threading.Lock()
        self._closed = False

    def call(self, work: Callable[[int], T]) -> T:
        with self._lock:
            if self._closed:
                raise ValueError("file is closed")
            return work(self.fd)

    def close(self, *, discard: bool = False) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)
            if discard and self.temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.temp)


def _forget(pending: asyncio.Future[Any] | None) -> None:
    """Retrieve a worker future's outcome later, so an abandoned one logs nothing."""
    if pending is not None:
        pending.add_done_callback(lambda f: f.cancelled() or f.exception())


def _write_all(fd: int, chunks: list[bytes], hasher: Any) -> None:
    for chunk in chunks:
        hasher.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_batch(fd: int, position: int, end: int, chunk_size: int) -> list[bytes]:
    chunks: list[bytes] = []
    batched = 0
    while position < end and batched < BATCH_BYTES:
        chunk = os.pread(fd, min(chunk_size, end - position), position)
        if not chunk:
            break
        chunks.append(chunk)
        position += len(chunk)
        batched += len(chunk)
    return chunks


class _Walk:
    """A walk of the volume that hands out regular files batch by batch.

    It holds one open directory and the paths of the directories still to visit, so
    memory stays bounded however large the volume is. Symlinks are not followed,
    and temp files of writes in progress are left out. Each batch is taken in a
    worker thread; the lock keeps a batch and ``close`` from running at once.
    """

    def __init__(self, root: str) -> None:
        self._root = root
        self._pending: list[str] = [""]
        self._directory = ""
        self._entries: os._ScandirIterator[str] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def next_batch(self, size: int) -> list[ListedFile]:
        """Up to ``size`` more files; an empty list once the walk is done."""
        batch: list[ListedFile] = []
        with self._lock:
            while len(batch) < size and not self._closed:
                if self._entries is None and not self._open_next():
                    break
                assert self._entries is not None
                entry = next(self._entries, None)
                if entry is None:
                    self._close_directory()
                    continue
                listed = self._visit(entry)
                if listed is not None:
                    batch.append(listed)
        return batch

    def close(self) -> None:
        """Stop the walk and release its open directory."""
        with self._lock:
            self._closed = True
            self._close_directory()

    def _open_next(self) -> bool:
        """Open the next directory to visit; False when none is left."""
        while self._pending:
            self._directory = self._pending.pop()
            try:
                self._entries = os.scandir(os.path.join(self._root, self._directory))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed since it was seen
            return True
        return False

    def _close_directory(self) -> None:
        if self._entries is not None:
            self._entries.close()
            self._entries = None

    def _visit(self, entry: os.DirEntry[str]) -> ListedFile | None:
        """The file ``entry`` names, or None (a directory is queued for later)."""
        key = f"{self._directory}/{entry.name}" if self._directory else entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                self._pending.append(key)
                return None
            if not entry.is_file(follow_symlinks=False) or entry.name.startswith(TEMP_PREFIX):
                return None
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None  # removed since the directory was read
        return ListedFile(key, info.st_size, info.st_mtime_ns)


class Volume:
    """Byte operations on one directory; every path stays under ``root``.

    ``clock`` gives the wall-clock time (seconds since the epoch) that temp files'
    mtimes are compared with when they are swept.
    """

    def __init__(
        self,
        root: Path,
        *,
        usage_max_age: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = os.path.realpath(root)
        self._usage_max_age = usage_max_age
        self._usage: tuple[float, VolumeUsage] | None = None
        self._usage_walk: asyncio.Future[VolumeUsage] | None = None
        self._clock = clock
        # Names of the temp files of this process's writes in progress: never swept.
        self._writing: set[str] = set()
        self._writing_lock = threading.Lock()

    # --- paths -------------------------------------------------------------------

    def resolve(self, path: str, *, allow_root: bool = False) -> str:
        """The real path of ``path`` under the root, symlinks followed (blocking).

        Raises:
            InvalidPath: absolute, ``..``, NUL, a temp-file name, or leaves the root.
        """
        if "\0" in path:
            raise InvalidPath("path contains a NUL byte")
        if path.startswith(("/", "\\")):
            raise InvalidPath("path must be relative to the volume")
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise InvalidPath("path must not contain '..'")
        if any(part.startswith(TEMP_PREFIX) for part in parts):
            raise InvalidPath("path names a temporary file")
        if not parts and not allow_root:
            raise InvalidPath("path names the volume root")
        real = os.path.realpath(os.path.join(self.root, *parts))
        if real == self.root:
            if parts and not allow_root:
                raise InvalidPath("path resolves to the volume root")
        elif not real.startswith(self.root + os.sep):
            raise InvalidPath("path leaves the volume")
        return real

    # --- write -------------------------------------------------------------------

    async def write(
        self,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        mode: int = DEFAULT_FILE_MODE,
        overwrite: bool = True,
        create_parents: bool = False,
        expected_size: int | None = None,
    ) -> Stored:
        """Store ``chunks`` at ``path`` atomically: a temp file, fsync, rename, fsync.

        On any failure or cancellation the temp file is removed and an existing
        file keeps its old content.

        Raises:
            InvalidPath, NotFound (parent missing), NotADirectory, IsADirectory,
            AlreadyExists (``overwrite`` false), PreconditionFailed (size differs
            from ``expected_size``), OSError (disk full).
        """
        creating = asyncio.ensure_future(
            asyncio.to_thread(self._create_temp, path, mode, overwrite, create_parents)
        )
        try:
            target, handle = await asyncio.shield(creating)
        except asyncio.CancelledError:
            # Its thread runs on and may still make the temp file: remove it then.
            creating.add_done_callback(self._abandon)
            raise
        try:
            return await self._fill(target, handle, chunks, overwrite, expected_size)
        finally:
            self._release_temp(handle)

    async def _fill(
        self,
        target: str,
        handle: _OpenFile,
        chunks: AsyncIterable[bytes],
        overwrite: bool,
        expected_size: int | None,
    ) -> Stored:
        hasher = hashlib.sha256()
        size = synced = 0
        pending: asyncio.Future[None] | None = None
        try:
            batch: list[bytes] = []
            batched = 0
            async for chunk in chunks:
                if not chunk:
                    continue
                batch.append(chunk)
                batched += len(chunk)
                size += len(chunk)
                if expected_size is not None and size > expected_size:
                    raise PreconditionFailed(f"more than the expected {expected_size} bytes")
                if batched >= BATCH_BYTES:
                    if pending is not None:
                        await pending
                    sync = size - synced >= SYNC_BYTES
                    if sync:
                        synced = size
                    # The next batch arrives from the network while this one is written.
                    pending = asyncio.ensure_future(
                        asyncio.to_thread(handle.call, _writer(batch, hasher, sync=sync))
                    )
                    batch, batched = [], 0
            if pending is not None:
                await pending
                pending = None
            if expected_size is not None and size != expected_size:
                raise PreconditionFailed(f"{size} bytes arrived, {expected_size} were expected")
            await asyncio.to_thread(self._commit, handle, target, batch, hasher, overwrite)
        except BaseException:
            _forget(pending)
            # Runs to the end in its thread even if this task is cancelled again.
            await asyncio.to_thread(handle.close, discard=True)
            raise
        return Stored(size, hasher.hexdigest())

    def _create_temp(
        self, path: str, mode: int, overwrite: bool, create_parents: bool
    ) -> tuple[str, _OpenFile]:
        target = self.resolve(path)
        parent = os.path.dirname(target)
        if create_parents:
            self._make_parents(parent)
        elif not os.path.isdir(parent):
            if os.path.lexists(parent):
                raise NotADirectory("a parent of the path is a file")
            raise NotFound("the parent directory does not exist")
        if os.path.isdir(target):
            raise IsADirectory("a directory is at the path")
        if not overwrite and os.path.lexists(target):
            raise AlreadyExists()
        name = f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        temp = os.path.join(parent, name)
        # Claimed before it exists, so a sweep never finds it unclaimed.
        with self._writing_lock:
            self._writing.add(name)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode & 0o7777)
            try:
                os.fchmod(fd, mode & 0o7777)
            except BaseException:
                os.close(fd)
                os.unlink(temp)
                raise
        except BaseException:
            with self._writing_lock:
                self._writing.discard(name)
            raise
        return target, _OpenFile(fd, temp)

    def _release_temp(self, handle: _OpenFile) -> None:
        """Let sweeps see ``handle``'s temp name again: its write has ended."""
        if handle.temp is not None:
            with self._writing_lock:
                self._writing.discard(os.path.basename(handle.temp))

    def _abandon(self, creating: asyncio.Future[tuple[str, _OpenFile]]) -> None:
        """Remove the temp file of a write cancelled while the file was being made."""
        if creating.cancelled() or creating.exception() is not None:
            return
        _target, handle = creating.result()
        _forget(asyncio.get_running_loop().run_in_executor(None, self._discard, handle))

    def _discard(self, handle: _OpenFile) -> None:
        handle.close(discard=True)
        self._release_temp(handle)

    def _make_parents(self, directory: str) -> None:
        missing: list[str] = []
        current = directory
        while not os.path.isdir(current):
            if os.path.lexists(current):
                raise NotADirectory("a parent of the path is a file")
            missing.append(current)
            current = os.path.dirname(current)
        for created in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(created, DEFAULT_DIR_MODE)
            _fsync_dir(os.path.dirname(created))

    def _commit(
        self, handle: _OpenFile, target: str, batch: list[bytes], hasher: Any, overwrite: bool
    ) -> None:
        def finish(fd: int) -> None:
            _write_all(fd, batch, hasher)
            os.fsync(fd)

        handle.call(finish)
        handle.close()
        temp = handle.temp
        assert temp is not None
        if overwrite:
            try:
                os.replace(temp, target)
            except IsADirectoryError:
                raise IsADirectory("a directory is at the path") from None
        else:
            self._link_new(temp, target)
        _fsync_dir(os.path.dirname(target))

    @staticmethod
    def _link_new(temp: str, target: str) -> None:
        """Publish ``temp`` at ``target`` only if nothing is there, atomically."""
        try:
            os.link(temp, target)
        except FileExistsError:
            raise AlreadyExists() from None
        except OSError as exc:
            if exc.errno not in _LINK_UNSUPPORTED:
                raise
            # The filesystem has no hard links: check, then rename.
            if os.path.lexists(target):
                raise AlreadyExists() from None
            os.replace(temp, target)
            return
        os.unlink(temp)

    # --- read --------------------------------------------------------------------

    async def read(
        self,
        path: str,
        *,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncGenerator[bytes, None]:
        """Open ``path`` and return its bytes from ``offset`` as chunks.

        Errors raise here, before the first chunk. A range past the end yields less
        (or nothing); the file read is the one open now, even if replaced meanwhile.

        Raises:
            InvalidPath, NotFound, IsADirectory, BadRequest (negative range).
        """
        if offset < 0 or (length is not None and length < 0):
            raise BadRequest("offset and length must not be negative")
        if chunk_size <= 0:
            chunk_size = DEFAULT_CHUNK_SIZE
        handle, end, first = await asyncio.to_thread(
            self._open_read, path, offset, length, chunk_size
        )
        return self._chunks(handle, offset, end, chunk_size, first)

    def _open_read(
        self, path: str, offset: int, length: int | None, chunk_size: int
    ) -> tuple[_OpenFile, int, list[bytes]]:
        target = self.resolve(path)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound() from None
        except IsADirectoryError:
            raise IsADirectory() from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectory()
            end = info.st_size if length is None else min(info.st_size, offset + length)
            first = _read_batch(fd, offset, end, chunk_size)
        except BaseException:
            os.close(fd)
            raise
        return _OpenFile(fd), end, first

    async def _chunks(
        self, handle: _OpenFile, position: int, end: int, chunk_size: int, first: list[bytes]
    ) -> AsyncGenerator[bytes, None]:
        pending: asyncio.Future[list[bytes]] | None = None
        try:
            batch = first
            while batch:
                position += sum(len(chunk) for chunk in batch)
                pending = None
                if position < end:
                    # Read ahead in a thread while this batch goes out.
                    pending = asyncio.ensure_future(
                        asyncio.to_thread(handle.call, _reader(position, end, chunk_size))
                    )
                for chunk in batch:
                    yield chunk
                if pending is None:
                    break
                batch = await pending
                pending = None
        finally:
            if pending is None or pending.done():
                handle.close()
            else:
                _forget(pending)
                await asyncio.to_thread(handle.close)

    # --- metadata operations -------------------------------------------------------

    async def stat(self, path: str) -> FileStat:
        """Kind, size, mode and mtime of ``path`` (``exists`` false when absent)."""
        return await asyncio.to_thread(self._stat, path)

    def _stat(self, path: str) -> FileStat:
        target = self.resolve(path, allow_root=True)
        try:
            info = os.stat(target)
        except (FileNotFoundError, NotADirectoryError):
            return FileStat(exists=False)
        return FileStat(
            exists=True,
            is_dir=stat.S_ISDIR(info.st_mode),
            size=info.st_size,
            mode=stat.S_IMODE(info.st_mode),
            mtime_ns=info.st_mtime_ns,
        )

    async def delete(self, path: str, *, recursive: bool = False, missing_ok: bool = False) -> bool:
        """Remove a file or directory; whether something was there.

        Raises:
            NotFound (unless ``missing_ok``), DirectoryNotEmpty (not ``recursive``).
        """
        return await asyncio.to_thread(self._delete, path, recursive, missing_ok)

    def _delete(self, path: str, recursive: bool, missing_ok: bool) -> bool:
        target = self.resolve(path)
        try:
            info = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            if missing_ok:
                return False
            raise NotFound() from None
        if stat.S_ISDIR(info.st_mode):
            if recursive:
                shutil.rmtree(target)
            else:
                try:
                    os.rmdir(target)
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise DirectoryNotEmpty() from None
                    raise
        else:
            os.unlink(target)
        _fsync_dir(os.path.dirname(target))
        return True

    async def mkdir(
        self, path: str, *, parents: bool = False, mode: int = DEFAULT_DIR_MODE
    ) -> None:
        """Create a directory (with ``parents``, also missing ancestors; an existing one is fine).

        Raises:
            AlreadyExists, NotFound (parent missing), NotADirectory.
        """
        await asyncio.to_thread(self._mkdir, path, parents, mode)

    def _mkdir(self, path: str, parents: bool, mode: int) -> None:
        target = self.resolve(path)
        if parents:
            if os.path.isdir(target):
                return
            if os.path.lexists(target):
                raise AlreadyExists("a file is at the path")
            self._make_parents(os.path.dirname(target))
        try:
            os.mkdir(target, mode & 0o7777)
        except FileExistsError:
            if parents and os.path.isdir(target):
                return
            raise AlreadyExists() from None
        except FileNotFoundError:
            raise NotFound("the parent directory does not exist") from None
        except NotADirectoryError:
            raise NotADirectory("a parent of the path is a file") from None
        _fsync_dir(os.path.dirname(target))

    async def rename(
        self,
        source: str,
        destination: str,
        *,
        overwrite: bool = False,
        create_parents: bool = False,
    ) -> None:
        """Move ``source`` to ``destination`` atomically.

        Raises:
            NotFound, AlreadyExists (``overwrite`` false), IsADirectory,
            NotADirectory, DirectoryNotEmpty, InvalidPath (into itself).
        """
        await asyncio.to_thread(self._rename, source, destination, overwrite, create_parents)

    def _rename(self, source: str, destination: str, overwrite: bool, create_parents: bool) -> None:
        src = self.resolve(source)
        dst = self.resolve(destination)
        try:
            src_info = os.lstat(src)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound() from None
        if src == dst:
            return
        if dst.startswith(src + os.sep):
            raise InvalidPath("cannot move a directory into itself")
        parent = os.path.dirname(dst)
        if create_parents:
            self._make_parents(parent)
        elif not os.path.isdir(parent):
            raise NotFound("the destination's parent directory does not exist")
        try:
            dst_info: os.stat_result | None = os.lstat(dst)
        except FileNotFoundError:
            dst_info = None
        if dst_info is not None:
            if not overwrite:
                raise AlreadyExists()
            if stat.S_ISDIR(dst_info.st_mode) and not stat.S_ISDIR(src_info.st_mode):
                raise IsADirectory("a directory is at the destination")
            if stat.S_ISDIR(src_info.st_mode) and not stat.S_ISDIR(dst_info.st_mode):
                raise NotADirectory("a file is at the destination")
        try:
            os.replace(src, dst)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise DirectoryNotEmpty() from None
            raise
        _fsync_dir(os.path.dirname(src))
        if os.path.dirname(src) != parent:
            _fsync_dir(parent)

    # --- volume ------------------------------------------------------------------

    async def usage(self) -> VolumeUsage:
        """Bytes in files under the root, plus free and total space on its filesystem.

        Callers at the same time share one walk of the tree; its answer is reused
        for ``usage_max_age`` seconds.
        """
        if self._usage is not None and time.monotonic() - self._usage[0] < self._usage_max_age:
            return self._usage[1]
        if self._usage_walk is None:
            walk = asyncio.ensure_future(asyncio.to_thread(self._measure))
            self._usage_walk = walk
            walk.add_done_callback(self._walked)
        return await asyncio.shield(self._usage_walk)

    def _walked(self, walk: asyncio.Future[VolumeUsage]) -> None:
        self._usage_walk = None
        if not walk.cancelled() and walk.exception() is None:
            self._usage = (time.monotonic(), walk.result())

    def _measure(self) -> VolumeUsage:
        used = 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                with contextlib.suppress(OSError):
                    info = os.lstat(os.path.join(directory, name))
                    if stat.S_ISREG(info.st_mode):
                        used += info.st_size
        disk = shutil.disk_usage(self.root)
        return VolumeUsage(used=used, free=disk.free, total=disk.total)

    async def list_files(
        self, *, batch_size: int = DEFAULT_LIST_BATCH
    ) -> AsyncGenerator[list[ListedFile], None]:
        """Every regular file under the root, in batches of up to ``batch_size``.

        The tree is walked in worker threads, one batch per hop, never on the event
        loop and never whole in memory. Temp files of writes in progress and
        symlinks are left out; files added or removed during the walk may or may
        not appear.
        """
        walk = _Walk(self.root)
        size = batch_size if batch_size > 0 else DEFAULT_LIST_BATCH
        try:
            while batch := await asyncio.to_thread(walk.next_batch, size):
                yield batch
        finally:
            # In a thread: a batch still running there (a cancelled hop) holds the lock.
            await asyncio.to_thread(walk.close)

    async def sweep_temp_files(self, older_than_seconds: float | None = None) -> int:
        """Remove temp files that interrupted writes left behind; return how many.

        With ``older_than_seconds``, only those untouched (mtime) for longer than
        that by ``clock``; without, every one. Temp files of this volume's writes in
        progress are always kept, however long their clients pause.
        """
        return await asyncio.to_thread(self._sweep, older_than_seconds)

    def _sweep(self, older_than_seconds: float | None) -> int:
        cutoff = None if older_than_seconds is None else self._clock() - older_than_seconds
        removed = 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                with self._writing_lock:
                    in_progress = name in self._writing
                if in_progress:
                    continue
                temp = os.path.join(directory, name)
                with contextlib.suppress(FileNotFoundError):
                    if cutoff is not None and os.lstat(temp).st_mtime >= cutoff:
                        continue
                    os.unlink(temp)
                    removed += 1
        if removed:
            logger.info("removed %d temp files of interrupted writes under %s", removed, self.root)
        return removed


def _writer(batch: list[bytes], hasher: Any, *, sync: bool) -> Callable[[int], None]:
    def work(fd: int) -> None:
        _write_all(fd, batch, hasher)
        if sync:
            os.fdatasync(fd)

    return work


def _reader(position: int, end: int, chunk_size: int) -> Callable[[int], list[bytes]]:
    return lambda fd: _read_batch(fd, position, end, chunk_size)
