"""One volume directory: confined paths, atomic streamed writes, ranged streamed reads.

Every path is relative to the root and can never leave it, not even through a
symlink. Blocking file I/O runs in worker threads, a few chunks per hop; a small
write (a body of at most ``SMALL_WRITE_BYTES``) or read takes a single hop. Each
file written has its block checksums in a sidecar
(:mod:`callfs_storage_node.checksums`), and a read checks every block before it
hands out any byte of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import functools
import hashlib
import logging
import os
import shutil
import stat
import sys
import threading
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterator,
    Sequence,
)
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
from callfs_storage_node import checksums

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
# A write whose whole body is at most this many bytes is held in memory until its
# stream ends and then done in one hop to a worker thread; a longer one streams.
SMALL_WRITE_BYTES = 1024 * 1024
# A long write has its bytes written out as it goes, every SYNC_BYTES, so the final fsync
# (the caller waits on it) stays short: see _Sync.data.
SYNC_BYTES = 64 * 1024 * 1024
# A usage walk visits every file. One that took SLOW_WALK seconds or more (a volume of
# some hundred thousand files) is answered again for WALK_PACE times as long as it took,
# whatever age callers accept: walks then take at most a tenth of a core, where metrics
# scrapes and gateways asking every few seconds would keep one walking all the time.
SLOW_WALK = 1.0
WALK_PACE = 9.0
_LINK_UNSUPPORTED = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})
# Locks that keep a file and its sidecar changing as one pair, shared by path hash.
_PATH_LOCKS = 64


@dataclass(frozen=True)
class Stored:
    """What a finished write reports: size and SHA-256 (hex)."""

    size: int
    sha256: str


@dataclass(frozen=True)
class ListedFile:
    """One stored file: its ``/``-separated path under the root, size and mtime."""

    key: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class VolumeUsage:
    """Bytes held by the files under the root, and free and total on its filesystem;
    how many stored files (``objects``: no sidecar, no temp file) and temp files
    (of writes in progress or interrupted) are under the root.
    """

    used: int
    free: int
    total: int
    objects: int = 0
    temp_files: int = 0


class _OpenFile:
    """A descriptor shared with worker threads: closed once, never during a call."""

    def __init__(
        self, fd: int, temp: str | None = None, sums: checksums.Sums | None = None
    ) -> None:
        self.fd = fd
        self.temp = temp
        self.sums = sums
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
                if self.sums is not None:
                    os.close(self.sums.fd)
            if discard and self.temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.temp)


class _Abandoned(Exception):
    """A small write whose caller was cancelled before it was committed: it publishes nothing."""


def _forget(pending: asyncio.Future[Any] | None) -> None:
    """Retrieve a worker future's outcome later, so an abandoned one logs nothing."""
    if pending is not None:
        pending.add_done_callback(lambda f: f.cancelled() or f.exception())


async def _to_the_end(work: Callable[[], T]) -> T:
    """``work()`` in a worker thread, run even if the caller is cancelled meanwhile.

    A cancelled ``asyncio.to_thread`` drops its call if no thread has taken it yet
    (a busy pool), so cleanup that must happen goes through here; the caller stops
    waiting, the call still runs.
    """
    running = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        _forget(running)
        raise


class _Digest:
    """What a write learns of its bytes on their way to disk: SHA-256 and block CRCs."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.blocks = checksums.BlockSums()

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.blocks.update(data)


def _check_size(size: int, expected: int | None, *, ended: bool) -> None:
    """Raise unless ``size`` bytes fit ``expected`` (matching it once the stream ``ended``).

    Raises:
        PreconditionFailed: more bytes than expected, or (``ended``) other than expected.
    """
    if expected is None:
        return
    if size > expected:
        raise PreconditionFailed(f"more than the expected {expected} bytes")
    if ended and size != expected:
        raise PreconditionFailed(f"{size} bytes arrived, {expected} were expected")


async def _head(
    source: AsyncIterator[bytes], bound: int
) -> tuple[list[bytes], bool, Exception | None]:
    """The first non-empty chunks of ``source``, taken until it ends or they pass ``bound``
    bytes; whether it ended, and the error it raised meanwhile (kept, so that the write
    raises it where a streamed one would, after the path's own errors).
    """
    head: list[bytes] = []
    size = 0
    try:
        async for chunk in source:
            if chunk:
                head.append(chunk)
                size += len(chunk)
                if size > bound:
                    return head, False, None
    except Exception as exc:
        return head, False, exc
    return head, True, None


async def _replayed(
    head: list[bytes], rest: AsyncIterator[bytes], error: Exception | None
) -> AsyncGenerator[bytes, None]:
    """``head`` again, then ``error`` if the source raised it, else the rest of the source.

    Each chunk of ``head`` is let go of once handed out.
    """
    head.reverse()
    while head:
        yield head.pop()
    if error is not None:
        raise error
    async for chunk in rest:
        yield chunk


def _write_all(fd: int, chunks: list[bytes], digest: _Digest) -> None:
    for chunk in chunks:
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


FsyncObserver = Callable[[str, float], None]
"""Told of each fsync a volume makes (in a worker thread): what was synced (``file``
or ``directory``) and how many seconds it took."""


class _Sync:
    """The volume's fsyncs (blocking), each timed for the observer, if any."""

    def __init__(self, observe: FsyncObserver | None = None) -> None:
        self._observe = observe

    def file(self, fd: int) -> None:
        """Sync a file's data and metadata."""
        self._timed("file", os.fsync, fd)

    def data(self, fd: int) -> None:
        """Have a long write's data written out as it goes: wait until what was started
        last time is on disk, and start writing the rest (Linux ``sync_file_range``), so
        the disk writes one window while the next arrives, and at most two are left
        for the final fsync. Elsewhere, sync the data now."""
        if _sync_file_range is not None:
            if _sync_file_range(fd, 0, 0, _WAIT_BEFORE | _WRITE) == 0:
                return
            error = ctypes.get_errno()
            if error and error not in _NO_RANGE_SYNC:
                raise OSError(error, os.strerror(error))
        self._timed("file", os.fdatasync, fd)

    def directory(self, path: str) -> None:
        """Sync a directory's entries."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._timed("directory", os.fsync, fd)
        finally:
            os.close(fd)

    def _timed(self, kind: str, call: Callable[[int], None], fd: int) -> None:
        if self._observe is None:
            call(fd)
            return
        start = time.perf_counter()
        try:
            call(fd)
        finally:
            self._observe(kind, time.perf_counter() - start)


def _libc_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """``sync_file_range(2)``, where the C library has it (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call


_sync_file_range = _libc_sync_file_range()
# sync_file_range(2)'s flags: wait for the writes in flight on the range, start the rest.
_WAIT_BEFORE = 1
_WRITE = 2
# What sync_file_range answers where it cannot help (a sandbox without it, a file
# system that refuses it): such a write syncs with fdatasync instead.
_NO_RANGE_SYNC = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ESPIPE})


def _write_new(path: str, data: bytes, sync: _Sync) -> None:
    """Create ``path`` holding ``data``, synced to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DEFAULT_FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        sync.file(fd)
    finally:
        os.close(fd)


def _unlink_if_present(path: str) -> bool:
    """Remove ``path``; whether it was there."""
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


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


class _Range:
    """The bytes ``position`` to ``end`` of an open file, handed out a batch of chunks
    of ``chunk_size`` per call (in a worker thread, one call at a time).
    """

    def __init__(self, position: int, end: int, chunk_size: int) -> None:
        self.position = position
        self.end = end
        self.chunk_size = chunk_size

    @property
    def done(self) -> bool:
        return self.position >= self.end

    def __call__(self, fd: int) -> list[bytes]:
        """The next batch; an empty list at the end."""
        raise NotImplementedError


class _PlainRange(_Range):
    """A range of a file without checksums (written before they were kept), unchecked."""

    def __call__(self, fd: int) -> list[bytes]:
        batch = _read_batch(fd, self.position, self.end, self.chunk_size)
        self.position += sum(len(chunk) for chunk in batch)
        return batch


class _CheckedRange(_Range):
    """A range read in whole blocks, each checked against its CRC before any byte of
    it is handed out; chunks are cut as in an unchecked read.

    The last block of a batch is kept for the next batch when the range goes on in
    it, so no block is read twice.

    Raises:
        ReplicaCorrupted: a block does not match its CRC.
    """

    def __init__(self, sums: checksums.Sums, position: int, end: int, chunk_size: int) -> None:
        super().__init__(position, end, chunk_size)
        self._sums = sums
        self._kept: tuple[int, bytes] | None = None

    def __call__(self, fd: int) -> list[bytes]:
        if self.done:
            return []
        block = self._sums.block_size
        stop = min(
            self.end, self.position + max(1, BATCH_BYTES // self.chunk_size) * self.chunk_size
        )
        first, last = self.position // block, (stop - 1) // block
        parts: list[memoryview] = []
        for index, data in zip(range(first, last + 1), self._blocks(fd, first, last), strict=True):
            start = index * block
            parts.append(memoryview(data)[max(self.position, start) - start : stop - start])
        self.position = stop
        if self.done or stop % block == 0:
            self._kept = None
        return _rechunk(parts, self.chunk_size)

    def _blocks(self, fd: int, first: int, last: int) -> list[bytes]:
        """Blocks ``first`` to ``last``, checked; the last one is kept for the next batch."""
        blocks: list[bytes] = []
        if self._kept is not None and self._kept[0] == first:
            blocks.append(self._kept[1])
        fetch = first + len(blocks)
        if fetch <= last:
            crcs = self._sums.crcs(fetch, last - fetch + 1)
            for index, expected in enumerate(crcs, start=fetch):
                start = index * self._sums.block_size
                length = min(self._sums.block_size, self._sums.size - start)
                data = _pread_full(fd, length, start)
                self._sums.check(index, data, expected)
                blocks.append(data)
        self._kept = (last, blocks[-1])
        return blocks


def _pread_full(fd: int, length: int, position: int) -> bytes:
    """``length`` bytes at ``position``, fewer only at the end of the file."""
    data = os.pread(fd, length, position)
    while len(data) < length:
        more = os.pread(fd, length - len(data), position + len(data))
        if not more:
            break
        data += more
    return data


def _rechunk(parts: list[memoryview], size: int) -> list[bytes]:
    """``parts`` cut and joined into chunks of ``size`` bytes (the last may be shorter)."""
    chunks: list[bytes] = []
    pending: list[memoryview] = []
    filled = 0
    for part in parts:
        while part:
            take = min(len(part), size - filled)
            pending.append(part[:take])
            filled += take
            part = part[take:]
            if filled == size:
                chunks.append(_joined(pending))
                pending, filled = [], 0
    if pending:
        chunks.append(_joined(pending))
    return chunks


def _joined(views: list[memoryview]) -> bytes:
    if len(views) == 1:
        whole = views[0].obj
        if isinstance(whole, bytes) and len(whole) == views[0].nbytes:
            return whole  # a whole block: no copy
    return b"".join(views)


class _Walk:
    """A walk of the volume that hands out regular files batch by batch.

    It holds one open directory and the paths of the directories still to visit, so
    memory stays bounded however large the volume is. Symlinks are not followed,
    and temp files of writes in progress and checksum sidecars are left out. Each
    batch is taken in a worker thread; the lock keeps a batch and ``close`` from
    running at once.
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
            if (
                not entry.is_file(follow_symlinks=False)
                or entry.name.startswith(TEMP_PREFIX)
                or checksums.is_sidecar(entry.name)
            ):
                return None
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None  # removed since the directory was read
        return ListedFile(key, info.st_size, info.st_mtime_ns)


class Volume:
    """Byte operations on one directory; every path stays under ``root``.

    ``clock`` gives the wall-clock time (seconds since the epoch) that temp files'
    mtimes are compared with when they are swept; ``observe_fsync`` is told of every
    fsync made (see :data:`FsyncObserver`).
    """

    def __init__(
        self,
        root: Path,
        *,
        usage_max_age: float = 0.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        small_write_bytes: int = SMALL_WRITE_BYTES,
        observe_fsync: FsyncObserver | None = None,
    ) -> None:
        self.root = os.path.realpath(root)
        self._sync = _Sync(observe_fsync)
        self._small_write_bytes = small_write_bytes
        self._usage_max_age = usage_max_age
        # (when the last walk ended, its answer, the seconds it took)
        self._usage: tuple[float, VolumeUsage, float] | None = None
        self._usage_walk: asyncio.Future[VolumeUsage] | None = None
        self._walk_started = 0.0
        self._clock = clock
        self._monotonic = monotonic
        # Names of the temp files of this process's writes in progress: never swept.
        self._writing: set[str] = set()
        self._writing_lock = threading.Lock()
        self._path_locks = tuple(threading.Lock() for _ in range(_PATH_LOCKS))

    # --- paths -------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *paths: str) -> Iterator[None]:
        """Hold the locks of ``paths`` (real paths), so that each file and its sidecar
        are seen and changed as one pair.
        """
        with contextlib.ExitStack() as stack:
            for index in sorted({hash(path) % len(self._path_locks) for path in paths}):
                stack.enter_context(self._path_locks[index])
            yield

    def resolve(self, path: str) -> str:
        """The real path of ``path`` under the root, symlinks followed (blocking).

        Raises:
            InvalidPath: absolute, ``..``, NUL, a temp-file or sidecar name, or
                leaves the root.
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
        if any(checksums.is_sidecar(part) for part in parts):
            raise InvalidPath("path names a checksum file")
        if not parts:
            raise InvalidPath("path names the volume root")
        real = os.path.realpath(os.path.join(self.root, *parts))
        if real == self.root:
            raise InvalidPath("path resolves to the volume root")
        if not real.startswith(self.root + os.sep):
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

        The block checksums are taken from the bytes on their way to disk and stored
        in the file's sidecar (see :meth:`_publish`). On any failure or cancellation
        the temp files are removed and an existing file keeps its old content.

        A body that ends within ``small_write_bytes`` is written whole in one worker
        thread call (:meth:`_store`) once its stream ends; a longer one is streamed,
        the first chunks taken then written first. Both take the same blocking steps.

        Raises:
            InvalidPath, NotFound (parent missing), NotADirectory, IsADirectory,
            AlreadyExists (``overwrite`` false), PreconditionFailed (size differs
            from ``expected_size``), OSError (disk full).
        """
        source = aiter(chunks)
        head, ended, error = await _head(source, self._small_write_bytes)
        if ended:
            return await self._write_small(
                path, head, mode, overwrite, create_parents, expected_size
            )
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
            async with contextlib.aclosing(_replayed(head, source, error)) as rest:
                return await self._fill(target, handle, rest, overwrite, expected_size)
        finally:
            self._release_temp(handle)

    async def _write_small(
        self,
        path: str,
        body: list[bytes],
        mode: int,
        overwrite: bool,
        create_parents: bool,
        expected_size: int | None,
    ) -> Stored:
        """Write ``body``, the whole of a small write, in one hop (see :meth:`_store`)."""
        abandoned = threading.Event()
        try:
            return await asyncio.to_thread(
                self._store, path, body, mode, overwrite, create_parents, expected_size, abandoned
            )
        except asyncio.CancelledError:
            # Its thread runs on: it publishes nothing unless it is committing already
            # (as a streamed write cancelled during its commit), and removes its temp file.
            abandoned.set()
            raise

    def _store(
        self,
        path: str,
        body: list[bytes],
        mode: int,
        overwrite: bool,
        create_parents: bool,
        expected_size: int | None,
        abandoned: threading.Event,
    ) -> Stored:
        """A whole write of ``body`` (blocking): the steps of a streamed write, in order.

        The temp file is made (the path's errors first, as in a streamed write), the
        size checked, then :meth:`_commit` writes, syncs and publishes; on failure the
        temp file is removed. Once ``abandoned`` is set, nothing more is done.
        """
        if abandoned.is_set():
            raise _Abandoned()
        size = sum(len(chunk) for chunk in body)
        target, handle = self._create_temp(path, mode, overwrite, create_parents)
        digest = _Digest()
        try:
            try:
                _check_size(size, expected_size, ended=True)
                if abandoned.is_set():
                    raise _Abandoned()
                self._commit(handle, target, body, digest, overwrite)
            except BaseException:
                handle.close(discard=True)
                raise
        finally:
            self._release_temp(handle)
        return Stored(size, digest.sha256.hexdigest())

    async def _fill(
        self,
        target: str,
        handle: _OpenFile,
        chunks: AsyncIterable[bytes],
        overwrite: bool,
        expected_size: int | None,
    ) -> Stored:
        digest = _Digest()
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
                _check_size(size, expected_size, ended=False)
                if batched >= BATCH_BYTES:
                    if pending is not None:
                        await pending
                    sync = size - synced >= SYNC_BYTES
                    if sync:
                        synced = size
                    # The next batch arrives from the network while this one is written.
                    pending = asyncio.ensure_future(
                        asyncio.to_thread(
                            handle.call, _writer(batch, digest, self._sync if sync else None)
                        )
                    )
                    batch, batched = [], 0
            if pending is not None:
                await pending
                pending = None
            _check_size(size, expected_size, ended=True)
            await asyncio.to_thread(self._commit, handle, target, batch, digest, overwrite)
        except BaseException:
            _forget(pending)
            # A cancellation while this waits (gRPC's, after a stream that broke off)
            # must not leave the temp file behind.
            await _to_the_end(functools.partial(handle.close, discard=True))
            raise
        return Stored(size, digest.sha256.hexdigest())

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
        # Claimed before they exist, so a sweep never finds them unclaimed.
        with self._writing_lock:
            self._writing.update((name, checksums.sidecar_of(name)))
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
                self._writing.difference_update((name, checksums.sidecar_of(name)))
            raise
        return target, _OpenFile(fd, temp)

    def _release_temp(self, handle: _OpenFile) -> None:
        """Let sweeps see ``handle``'s temp name again: its write has ended."""
        if handle.temp is not None:
            name = os.path.basename(handle.temp)
            with self._writing_lock:
                self._writing.difference_update((name, checksums.sidecar_of(name)))

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
            # Made by a concurrent write between the two looks: a folder after all.
            if os.path.lexists(current) and not os.path.isdir(current):
                raise NotADirectory("a parent of the path is a file")
            missing.append(current)
            current = os.path.dirname(current)
        for created in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(created, DEFAULT_DIR_MODE)
            self._sync.directory(os.path.dirname(created))

    def _commit(
        self, handle: _OpenFile, target: str, batch: list[bytes], digest: _Digest, overwrite: bool
    ) -> None:
        def finish(fd: int) -> None:
            _write_all(fd, batch, digest)
            self._sync.file(fd)

        handle.call(finish)
        handle.close()
        temp = handle.temp
        assert temp is not None
        sums_temp = checksums.sidecar_of(temp)
        try:
            _write_new(sums_temp, digest.blocks.encode(), self._sync)
            with self._locked(target):
                self._publish(temp, sums_temp, target, overwrite)
        except BaseException:
            _unlink_if_present(sums_temp)
            raise

    def _publish(self, temp: str, sums_temp: str, target: str, overwrite: bool) -> None:
        """Move the synced ``temp`` and its sidecar ``sums_temp`` to ``target`` (its lock held).

        A new file's sidecar is renamed first, its bytes second, and one directory sync
        makes both durable before the write is answered: a crash before it may leave a
        sidecar without its file (the sweep removes it) or the unanswered file without
        its sidecar (read unchecked; nobody was told it exists). A file replaced loses
        its sidecar before the new bytes take its place, and the new sidecar follows
        them: a crash in between leaves bytes unchecked, never checked against another
        file's sums. Each of those steps is on disk before the next one starts, since
        their order is what makes a crash safe: the old bytes were answered already.
        """
        sums = checksums.sidecar_of(target)
        directory = os.path.dirname(target)
        if os.path.isdir(target):
            raise IsADirectory("a directory is at the path")
        if not os.path.lexists(target):
            os.replace(sums_temp, sums)
            try:
                self._place(temp, target, overwrite)
            except AlreadyExists:
                # Another process's file took the path meanwhile: these are not its sums.
                _unlink_if_present(sums)
                raise
        else:
            if not overwrite:
                raise AlreadyExists()
            if _unlink_if_present(sums):
                self._sync.directory(directory)
            self._place(temp, target, overwrite)
            self._sync.directory(directory)
            os.replace(sums_temp, sums)
        self._sync.directory(directory)

    def _place(self, temp: str, target: str, overwrite: bool) -> None:
        if overwrite:
            try:
                os.replace(temp, target)
            except IsADirectoryError:
                raise IsADirectory("a directory is at the path") from None
        else:
            self._link_new(temp, target)

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
        handle, reader, first = await asyncio.to_thread(
            self._open_read, path, offset, length, chunk_size
        )
        return self._chunks(handle, reader, first)

    def _open_read(
        self, path: str, offset: int, length: int | None, chunk_size: int
    ) -> tuple[_OpenFile, _Range, list[bytes]]:
        target = self.resolve(path)
        # Under the lock, the file and the sidecar opened belong together.
        with self._locked(target):
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
                sums = checksums.open_sums(target, path, info.st_size)
            except BaseException:
                os.close(fd)
                raise
        handle = _OpenFile(fd, sums=sums)
        end = info.st_size if length is None else min(info.st_size, offset + length)
        reader: _Range = (
            _PlainRange(offset, end, chunk_size)
            if sums is None
            else _CheckedRange(sums, offset, end, chunk_size)
        )
        try:
            first = handle.call(reader)
        except BaseException:
            handle.close()
            raise
        return handle, reader, first

    async def _chunks(
        self, handle: _OpenFile, reader: _Range, first: list[bytes]
    ) -> AsyncGenerator[bytes, None]:
        pending: asyncio.Future[list[bytes]] | None = None
        try:
            batch = first
            while batch:
                pending = None
                if not reader.done:
                    # Read ahead in a thread while this batch goes out.
                    pending = asyncio.ensure_future(asyncio.to_thread(handle.call, reader))
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

    # --- delete ------------------------------------------------------------------

    async def delete(self, path: str, *, recursive: bool = False, missing_ok: bool = False) -> bool:
        """Remove a file (and its sidecar) or directory; whether something was there.

        Raises:
            NotFound (unless ``missing_ok``), DirectoryNotEmpty (not ``recursive``).
        """
        return await asyncio.to_thread(self._delete, path, recursive, missing_ok)

    def _delete(self, path: str, recursive: bool, missing_ok: bool) -> bool:
        target = self.resolve(path)
        info = self._unlink_file(target)
        if info is None:
            if missing_ok:
                return False
            raise NotFound()
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
        self._sync.directory(os.path.dirname(target))
        return True

    async def delete_many(self, paths: Sequence[str]) -> list[bool]:
        """Remove the file at each of ``paths`` with its sidecar, all in one hop to a
        worker thread; for each, whether a file was there and went. A path where
        nothing is, or a directory, is left as it is.

        Meant for objects nothing points to any more: the removals are not synced, so
        a crash can bring some back, as orphans for the reconciler.

        Raises:
            InvalidPath: one of ``paths`` is invalid (checked before any is removed).
        """
        return await asyncio.to_thread(self._delete_many, list(paths))

    def _delete_many(self, paths: list[str]) -> list[bool]:
        targets = [self.resolve(path) for path in paths]
        removed = []
        for target in targets:
            info = self._unlink_file(target)
            removed.append(info is not None and not stat.S_ISDIR(info.st_mode))
        return removed

    def _unlink_file(self, target: str) -> os.stat_result | None:
        """Remove the file at ``target`` (a real path) and its sidecar; what was there
        (None: nothing). A directory there is left for the caller."""
        with self._locked(target):
            try:
                info = os.lstat(target)
            except (FileNotFoundError, NotADirectoryError):
                # The sidecar of a file that never appeared (a crash mid-write).
                _unlink_if_present(checksums.sidecar_of(target))
                return None
            if not stat.S_ISDIR(info.st_mode):
                # The file first: a crash in between leaves only a sidecar, which is swept.
                os.unlink(target)
                _unlink_if_present(checksums.sidecar_of(target))
        return info

    # --- volume ------------------------------------------------------------------

    async def usage(self, *, max_age: float | None = None) -> VolumeUsage:
        """Bytes in files under the root, plus free and total space on its filesystem,
        and how many objects and temp files are there.

        Callers at the same time share one walk of the tree; its answer is reused
        for ``max_age`` seconds (default ``usage_max_age``), or longer after a slow walk
        (see :data:`WALK_PACE`).
        """
        if self._usage is not None and self._fresh(max_age):
            return self._usage[1]
        return await asyncio.shield(self._walk())

    def _fresh(self, max_age: float | None) -> bool:
        """Whether the last walk's answer serves a caller accepting ``max_age``."""
        assert self._usage is not None
        ended, _answer, seconds = self._usage
        age = self._usage_max_age if max_age is None else max_age
        if seconds >= SLOW_WALK:
            age = max(age, WALK_PACE * seconds)
        return self._monotonic() - ended < age

    async def space(self) -> VolumeUsage:
        """Free and total space as the filesystem reports them now; the bytes, objects
        and temp files of the last walk of :meth:`usage`, without waiting for a new one.

        A walk visits every file, so on a big volume it takes long: this answers at
        once, starting a walk in the background when the last one is older than
        ``usage_max_age``. Only the first call waits for one.
        """
        last = self._usage
        if last is None:
            walked = await self.usage()
        else:
            if not self._fresh(None):
                self._walk()
            walked = last[1]
        disk = await asyncio.to_thread(shutil.disk_usage, self.root)
        return dataclasses.replace(walked, free=disk.free, total=disk.total)

    def _walk(self) -> asyncio.Future[VolumeUsage]:
        """The walk of the tree under way, started if none is."""
        if self._usage_walk is None:
            self._walk_started = self._monotonic()
            walk = asyncio.ensure_future(asyncio.to_thread(self._measure))
            self._usage_walk = walk
            walk.add_done_callback(self._walked)
        return self._usage_walk

    @property
    def last_usage(self) -> VolumeUsage | None:
        """What the last finished walk of :meth:`usage` measured (None before one)."""
        return None if self._usage is None else self._usage[1]

    def _walked(self, walk: asyncio.Future[VolumeUsage]) -> None:
        self._usage_walk = None
        if not walk.cancelled() and walk.exception() is None:
            ended = self._monotonic()
            self._usage = (ended, walk.result(), ended - self._walk_started)

    def _measure(self) -> VolumeUsage:
        used = objects = temp_files = 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                with contextlib.suppress(OSError):
                    info = os.lstat(os.path.join(directory, name))
                    if stat.S_ISREG(info.st_mode):
                        used += info.st_size
                        if name.startswith(TEMP_PREFIX):
                            temp_files += 1
                        elif not checksums.is_sidecar(name):
                            objects += 1
        disk = shutil.disk_usage(self.root)
        return VolumeUsage(
            used=used,
            free=disk.free,
            total=disk.total,
            objects=objects,
            temp_files=temp_files,
        )

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
            await _to_the_end(walk.close)

    async def sweep_temp_files(self, older_than_seconds: float | None = None) -> int:
        """Remove what interrupted writes left behind: temp files, and sidecars whose
        file never appeared or is gone; return how many files went.

        With ``older_than_seconds``, only those untouched (mtime) for longer than
        that by ``clock``; without, every one. Temp files of this volume's writes in
        progress are always kept, however long their clients pause.
        """
        return await asyncio.to_thread(self._sweep, older_than_seconds)

    def _sweep(self, older_than_seconds: float | None) -> int:
        cutoff = None if older_than_seconds is None else self._clock() - older_than_seconds
        temps = orphans = 0
        for directory, _dirs, files in os.walk(self.root):
            present = set(files)
            for name in files:
                path = os.path.join(directory, name)
                if name.startswith(TEMP_PREFIX):
                    temps += self._sweep_temp(name, path, cutoff)
                elif checksums.is_sidecar(name) and name[: -len(checksums.SUFFIX)] not in present:
                    orphans += self._sweep_sidecar(path, cutoff)
        if temps:
            logger.info("removed %d temp files of interrupted writes under %s", temps, self.root)
        if orphans:
            logger.info("removed %d sidecars without their file under %s", orphans, self.root)
        return temps + orphans

    def _sweep_temp(self, name: str, temp: str, cutoff: float | None) -> int:
        with self._writing_lock:
            if name in self._writing:
                return 0
        return _remove_older(temp, cutoff)

    def _sweep_sidecar(self, sums: str, cutoff: float | None) -> int:
        target = sums[: -len(checksums.SUFFIX)]
        # Under the lock: a write publishes its sidecar just before its file.
        with self._locked(target):
            if os.path.lexists(target) and not os.path.isdir(target):
                return 0
            return _remove_older(sums, cutoff)


def _remove_older(path: str, cutoff: float | None) -> int:
    """Remove ``path`` if untouched since before ``cutoff`` (any time if None); 1 if removed."""
    try:
        if cutoff is not None and os.lstat(path).st_mtime >= cutoff:
            return 0
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1


def _writer(batch: list[bytes], digest: _Digest, sync: _Sync | None) -> Callable[[int], None]:
    """Write ``batch``, then sync its data if ``sync`` is given."""

    def work(fd: int) -> None:
        _write_all(fd, batch, digest)
        if sync is not None:
            sync.data(fd)

    return work
