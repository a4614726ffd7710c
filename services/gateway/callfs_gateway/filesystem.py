"""The filesystem the gateway serves: every file and directory operation of API.md.

Plain Python over the runtime's adapters (no fastapi, no grpc). Order of work:
resolve the path and its ancestors in one metadata round trip, decide permissions,
move bytes, then commit metadata under the path's lock. Bytes go first and are
removed again when the metadata commit fails; on delete, metadata goes first.

Reads may be answered from the metadata cache. A mutation decides under the path's
lock from the store itself (``truth``), never the cache, and its update is
conditional on the row it decided from, so the object it discards afterwards is
the one it replaced and no other file's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson

from callfs import namespace, paths, permissions, reclaimer
from callfs.backends.base import Backend, ObjectRef, Written, close_stream, new_object_key
from callfs.entry import Entry, EntryType, utcnow
from callfs.errors import (
    AlreadyExists,
    BackendUnavailable,
    BadRequest,
    CallFSError,
    DirectoryNotEmpty,
    IsADirectory,
    NotADirectory,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
)
from callfs.namespace import Resolved
from callfs.objectcache import one_chunk
from callfs.permissions import EXECUTE, READ, WRITE, User
from callfs.runtime import Runtime

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Download:
    """An opened file: its entry, the byte range served and the stream."""

    entry: Entry
    start: int
    end: int
    stream: AsyncIterator[bytes]


def etag_matches(header: str, etag: str | None) -> bool:
    """Whether an If-Match / If-None-Match header names ``etag`` (or is ``*``)."""
    if etag is None:
        return False
    for candidate in header.split(","):
        value = candidate.strip()
        if value == "*":
            return True
        if value.startswith("W/"):
            value = value[2:]
        if value.strip('"') == etag:
            return True
    return False


class FileSystem:
    """The namespace as one user sees it."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.store = runtime.store
        self.truth = runtime.truth
        self.settings = runtime.settings
        self.default_file_mode = int(self.settings.auth.default_file_mode, 8)
        self.default_dir_mode = int(self.settings.auth.default_dir_mode, 8)

    # Lookups

    async def resolve(self, path: str) -> Resolved:
        """Look up ``path`` and its ancestors (see :func:`callfs.namespace.resolve`)."""
        return await namespace.resolve(self.store, path)

    async def lookup(self, user: User, path: str) -> Resolved:
        """Resolve ``path`` for use (see :func:`callfs.namespace.lookup`)."""
        return await namespace.lookup(self.store, user, path)

    async def _decide(self, path: str) -> Resolved:
        """:meth:`resolve` from the store itself, for a mutation holding the path's lock."""
        return await namespace.resolve(self.truth, path)

    async def _decide_use(self, user: User, path: str) -> Resolved:
        """:meth:`lookup` from the store itself, for a mutation holding the path's lock."""
        return await namespace.lookup(self.truth, user, path)

    async def stat(self, user: User, path: str) -> Entry:
        """The entry at ``path``, as ``user`` may see it."""
        resolved = await self.lookup(user, path)
        assert resolved.entry is not None
        return resolved.entry

    async def open_listing(
        self,
        user: User,
        path: str,
        *,
        max_depth: int,
        limit: int | None = None,
        after: str | None = None,
    ) -> Listing:
        """A listing of the directory ``path`` down to ``max_depth`` (0: its children),
        decided now (the directory found, ``r`` on it) and read page by page later.
        """
        directory = await self.stat(user, path)
        return self.listing(user, directory, max_depth=max_depth, limit=limit, after=after)

    def listing(
        self,
        user: User,
        directory: Entry,
        *,
        max_depth: int,
        limit: int | None = None,
        after: str | None = None,
    ) -> Listing:
        """:meth:`open_listing` of an entry already looked up for ``user``.

        Raises:
            NotADirectory: ``directory`` is a file.
            PermissionDenied: ``user`` may not list it.
        """
        if not directory.is_dir:
            raise NotADirectory(f"{directory.path} is not a directory")
        permissions.require(user, directory, READ, "list")
        return Listing(self, user, directory, max_depth, limit, after)

    async def list_tree(
        self,
        user: User,
        path: str,
        *,
        max_depth: int,
        limit: int | None,
        after: str | None,
    ) -> tuple[list[Entry], str | None]:
        """A sorted page of the entries below a directory, down to ``max_depth``, whole;
        returns it and the path to continue after (None at the end). See :class:`Listing`.
        """
        listing = await self.open_listing(user, path, max_depth=max_depth, limit=limit, after=after)
        entries = [entry async for page in listing.pages() for entry in page]
        return entries, listing.next_after

    # Reading

    async def open_file(
        self, user: User, entry: Entry, start: int = 0, end: int | None = None
    ) -> Download:
        """Open a file's bytes ``start..end`` (inclusive) for streaming."""
        permissions.require(user, entry, READ, "read")
        last = entry.size - 1 if end is None else end
        stream = await self.read_bytes(entry, start, last)
        self.rt.metrics.file_operations.labels("read", entry.backend).inc()
        return Download(entry, start, last, stream)

    async def read_bytes(self, entry: Entry, start: int, end: int) -> AsyncIterator[bytes]:
        """Open the stored bytes of ``entry`` (errors raise before the first chunk)."""
        backend = self.rt.backend(entry.backend)
        try:
            return await namespace.open_bytes(backend, entry, start, end, cache=self.rt.objects)
        except NotFound:
            logger.error(
                "the bytes of %s are missing: object %s on %s",
                entry.path,
                entry.object_key,
                entry.instance_id or entry.backend,
            )
            raise

    # Creating and replacing

    async def create_directory(self, user: User, path: str, mode: int | None) -> tuple[Entry, bool]:
        """Create a directory (and missing parents); return it and whether it is new.

        Raises:
            AlreadyExists: a file is there.
        """
        async with self._locked(path):
            resolved = await self._decide(path)
            permissions.require_traverse(user, resolved.ancestors)
            if resolved.entry is not None and resolved.entry.is_dir:
                return resolved.entry, False
            permissions.require_create(user, resolved.ancestors[-1])
            if resolved.entry is not None:
                raise AlreadyExists(f"{path} exists and is a file")
            entry = _created(
                user,
                path,
                "directory",
                self.default_dir_mode if mode is None else mode,
                backend=self.settings.backend.default_backend,
            )
            try:
                await self.store.create(entry, self._parents(user, resolved))
            except AlreadyExists:
                existing = await self.truth.get(path)
                if existing is not None and existing.is_dir:
                    return existing, False
                raise
        self.rt.metrics.file_operations.labels("mkdir", entry.backend).inc()
        return entry, True

    async def write_file(
        self,
        user: User,
        path: str,
        body: AsyncIterable[bytes],
        *,
        replace: bool,
        mode: int | None = None,
        backend_name: str | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> tuple[Entry, bool]:
        """Create (POST) or create-or-replace (PUT) a file from a byte stream.

        Returns the entry and whether it was created. The previous content stays
        whole until the new bytes are stored, and whenever anything fails.

        Raises:
            AlreadyExists: POST on an existing path.
            IsADirectory: a directory is there.
            PreconditionFailed: If-Match / If-None-Match say no.
        """
        chunks: AsyncIterable[bytes] = self._limited(body)
        small: bytes | None = None
        if self.settings.backend.inline_max_bytes:
            small, chunks = await _within(chunks, self.settings.backend.inline_max_bytes)
        stored: tuple[ObjectRef, Written] | None = None
        if small is None:
            # Checked before any byte is stored (from the cache), and stored before the
            # lock is taken: a long upload holds no lock.
            resolved = await self.resolve(path)
            permissions.require_traverse(user, resolved.ancestors)
            current = resolved.entry
            self._check_write(user, resolved, current, replace, if_match, if_none_match)
            stored = await self._store(path, current, backend_name, chunks)
        try:
            async with self._locked(path):
                # Decide again under the lock, from the store itself: another writer
                # may have won meanwhile, and the cache may not have heard of it.
                resolved = await self._decide(path)
                permissions.require_traverse(user, resolved.ancestors)
                previous = resolved.entry
                self._check_write(user, resolved, previous, replace, if_match, if_none_match)
                content = None
                if small is not None:
                    # A small body is all here already: decided once, under the lock.
                    stored, content = await self._store_small(path, previous, backend_name, small)
                assert stored is not None
                ref, written = stored
                entry = await self._commit_version(user, resolved, ref, written, mode, content)
        except BaseException:
            if stored is not None:
                await self._discard(stored[0])
            raise
        if previous is not None:
            await self._discard_entry(previous)
        self.rt.metrics.file_operations.labels(
            "create" if previous is None else "update", entry.backend
        ).inc()
        return entry, previous is None

    async def _commit_version(
        self,
        user: User,
        resolved: Resolved,
        ref: ObjectRef,
        written: Written,
        mode: int | None,
        content: bytes | None = None,
    ) -> Entry:
        """Point the file at ``resolved.path`` to the stored object ``ref``: a new row, or
        the existing one updated only while it still holds the object it was decided
        from (so that object, and no other file's, is the one replaced). ``content`` is
        the object's bytes when the metadata store is to keep them with the row.
        """
        previous = resolved.entry
        now = utcnow()
        stored = {
            "size": written.size,
            "etag": written.etag,
            "backend": ref.backend,
            "instance_id": ref.instance_id,
            "replicas": ref.replicas,
            "object_key": ref.key,
        }
        if previous is None:
            entry = _created(
                user,
                resolved.path,
                "file",
                self.default_file_mode if mode is None else mode,
                now=now,
                **stored,
            )
            await self.store.create(entry, self._parents(user, resolved), content=content)
            return entry
        entry = previous.evolve(mtime=now, ctime=now, **stored)
        await self.store.update(entry, expected=previous, content=content)
        return entry

    async def _store(
        self,
        path: str,
        current: Entry | None,
        backend_name: str | None,
        chunks: AsyncIterable[bytes],
    ) -> tuple[ObjectRef, Written]:
        """Store the bytes of a new version of ``path``, before any metadata changes.

        An existing file stays on its backend, and on the nodes holding it where they
        can take it; a new one goes where its backend places it.
        """
        if current is None:
            return await self.rt.backend(backend_name).write_new(path, chunks)
        backend = self.rt.backend(current.backend)
        return await backend.write_new(path, chunks, prefer=current.holders)

    async def _store_small(
        self, path: str, current: Entry | None, backend_name: str | None, data: bytes
    ) -> tuple[tuple[ObjectRef, Written], bytes | None]:
        """:meth:`_store` for a body of at most ``backend.inline_max_bytes``: a storage-node
        file's bytes go nowhere yet, and are returned for the metadata store to keep
        with the row that commits them; an S3 file's are stored as any other.
        """
        backend = self.rt.backend(backend_name if current is None else current.backend)
        if backend.name != "localfs":
            return await self._store(path, current, backend_name, one_chunk(data)), None
        sha256 = hashlib.sha256(data).hexdigest()
        ref = ObjectRef("localfs", new_object_key(), etag=sha256)
        return (ref, Written(len(data), sha256, sha256)), data

    def _check_write(
        self,
        user: User,
        resolved: Resolved,
        current: Entry | None,
        replace: bool,
        if_match: str | None,
        if_none_match: str | None,
    ) -> None:
        """Whether this write may go ahead: the permission first, then API.md's answers.

        Checking the permission first keeps a 409, 400 or 412 (which would confirm a
        guessed ETag) from a caller who may not write.
        """
        if current is None:
            permissions.require_create(user, resolved.ancestors[-1])
            if if_match is not None:
                raise PreconditionFailed("If-Match: the file does not exist")
            return
        if not replace:
            permissions.require_create(user, resolved.ancestors[-1])
            raise AlreadyExists(f"{current.path} already exists")
        permissions.require(user, current, WRITE, "write")
        if current.is_dir:
            raise IsADirectory(f"{current.path} is a directory")
        if if_none_match is not None and etag_matches(if_none_match, current.etag):
            raise PreconditionFailed("If-None-Match: the file exists with a matching ETag")
        if if_match is not None and not etag_matches(if_match, current.etag):
            raise PreconditionFailed("If-Match: the ETag does not match")

    def _parents(self, user: User, resolved: Resolved) -> list[Entry]:
        return [
            _created(
                user,
                missing,
                "directory",
                self.default_dir_mode,
                backend=self.settings.backend.default_backend,
            )
            for missing in resolved.missing
        ]

    async def _limited(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """Re-chunk the body to the configured chunk size and enforce the upload limit."""
        limit = self.settings.server.max_upload_bytes
        size = self.settings.server.chunk_size
        total = 0
        # Joined once per chunk: each byte is copied once here, not twice.
        pieces: list[bytes] = []
        buffered = 0
        async for piece in body:
            total += len(piece)
            if limit and total > limit:
                raise PayloadTooLarge(f"upload exceeds the maximum of {limit} bytes")
            if not pieces and len(piece) >= size:
                yield piece
                continue
            pieces.append(piece)
            buffered += len(piece)
            if buffered >= size:
                yield b"".join(pieces)
                pieces, buffered = [], 0
        if pieces:
            yield b"".join(pieces)

    # Changing

    async def chmod(self, user: User, path: str, mode: int, *, want_dir: bool = False) -> Entry:
        """Change the mode bits (owner or root only).

        Raises:
            NotADirectory: ``want_dir`` (a trailing slash) and ``path`` is a file.
        """
        async with self._locked(path):
            entry = (await self._decide_use(user, path)).entry
            assert entry is not None
            if want_dir and not entry.is_dir:
                raise NotADirectory(f"{path} is not a directory")
            permissions.require_owner(user, entry)
            changed = entry.evolve(mode=mode, ctime=utcnow())
            await self.store.update(changed, expected=entry)
        self.rt.metrics.file_operations.labels("chmod", entry.backend).inc()
        return changed

    async def move(
        self,
        user: User,
        source: str,
        destination: str,
        *,
        overwrite: bool,
        create_parents: bool,
        backend_name: str | None = None,
        source_dir: bool = False,
        destination_dir: bool = False,
    ) -> Entry:
        """Rename or move ``source`` (with its subtree) to ``destination``.

        With ``backend_name`` different from the file's backend, the bytes move
        too: copied, verified, metadata switched, then the source removed.
        ``source_dir`` and ``destination_dir`` say a trailing slash named that path
        a directory.

        Raises:
            BadRequest: moving the root, or a directory into itself.
            NotADirectory: a path named a directory is (or would become) a file.
            NotFound: no source, or the destination's parent is missing
                without ``create_parents``.
            AlreadyExists: the destination exists and ``overwrite`` is false.
        """
        if source == paths.ROOT or destination == paths.ROOT:
            raise BadRequest("the root directory cannot be moved or replaced")
        if paths.is_within(destination, source) and destination != source:
            raise BadRequest("cannot move a directory into itself")
        async with self._locked(source, destination):
            src = await self._decide_use(user, source)
            entry = src.entry
            assert entry is not None
            switch = backend_name is not None and backend_name != entry.backend
            if destination == source and not switch:
                if (source_dir or destination_dir) and not entry.is_dir:
                    raise NotADirectory(f"{source} is not a directory")
                return entry
            dst = await self._decide_move(
                user,
                src,
                destination,
                overwrite=overwrite,
                create_parents=create_parents,
                backend_name=backend_name if switch else None,
                source_dir=source_dir,
                destination_dir=destination_dir,
            )
            if switch:
                assert backend_name is not None
                await self._move_bytes(entry, backend_name)
            replaced: list[Entry] = []
            if destination != source:
                replaced = await self.store.move(
                    source, destination, replace=overwrite, parents=self._parents(user, dst)
                )
        for old in replaced:
            await self._discard_entry(old)
        if destination != source:
            self.rt.metrics.file_operations.labels("rename", entry.backend).inc()
        moved = await self.truth.get(destination)
        return moved or entry.evolve(path=destination)

    async def _decide_move(
        self,
        user: User,
        src: Resolved,
        destination: str,
        *,
        overwrite: bool,
        create_parents: bool,
        backend_name: str | None,
        source_dir: bool,
        destination_dir: bool,
    ) -> Resolved:
        """Every check of a move, from the store itself under both paths' locks; return
        the destination resolved.
        """
        entry = src.entry
        assert entry is not None and src.parent is not None
        if (source_dir or destination_dir) and not entry.is_dir:
            raise NotADirectory(f"{src.path} is not a directory")
        if backend_name is not None:
            if entry.is_dir:
                raise BadRequest("only files can move between backends")
            self.rt.backend(backend_name)
        permissions.require_delete(user, src.parent, entry)
        dst = await self._decide(destination)
        permissions.require_traverse(user, dst.ancestors)
        if destination_dir and dst.entry is not None and not dst.entry.is_dir:
            raise NotADirectory(f"{destination} is not a directory")
        if dst.missing and not create_parents:
            raise NotFound(f"parent directory of {destination} does not exist")
        renamed = destination != src.path
        if dst.entry is not None and renamed:
            self._check_replace(user, entry, dst, overwrite=overwrite)
        else:
            permissions.require_create(user, dst.ancestors[-1])
        if entry.is_dir and paths.parent(src.path) != paths.parent(destination):
            # Moving a directory rewrites its "..": POSIX asks for w on it.
            permissions.require(user, entry, WRITE, "move")
        if backend_name is not None and dst.entry is not None and renamed and not overwrite:
            # Refuse before any byte moves: afterwards the file would stay switched.
            raise AlreadyExists(f"{destination} already exists")
        return dst

    def _check_replace(self, user: User, entry: Entry, dst: Resolved, *, overwrite: bool) -> None:
        target = dst.entry
        assert target is not None and dst.parent is not None
        if not overwrite:
            raise AlreadyExists(f"{target.path} already exists")
        if target.is_dir and not entry.is_dir:
            raise IsADirectory(f"{target.path} is a directory")
        if entry.is_dir and not target.is_dir:
            raise NotADirectory(f"{target.path} is not a directory")
        permissions.require_delete(user, dst.parent, target)

    async def _move_bytes(self, entry: Entry, backend_name: str) -> Entry:
        """Copy a file's bytes to another backend, verify them, switch the metadata.

        Whatever fails, the file stays where it was, readable, and its metadata
        unchanged: the copy is removed again and the source stream closed.

        Raises:
            BackendUnavailable: either backend failed, or the copy does not match the
                file (its size, or the SHA-256 its metadata records).
        """
        target_backend = self.rt.backend(backend_name)
        target, written, sha256 = await self._copy_out(entry, target_backend)
        try:
            source = self.rt.backend(entry.backend)
            _verify_copy(entry, written, sha256, sha256_etags=source.sha256_etags)
            moved = entry.evolve(
                backend=target.backend,
                instance_id=target.instance_id,
                replicas=target.replicas,
                object_key=target.key,
                etag=written.etag,
                ctime=utcnow(),
            )
            await self.store.update(moved, expected=entry)
        except BaseException:
            await self._discard(target)
            raise
        await self._discard_entry(entry)
        self.rt.metrics.file_operations.labels("migrate", backend_name).inc()
        return moved

    async def _copy_out(self, entry: Entry, backend: Backend) -> tuple[ObjectRef, Written, str]:
        """Stream a file's bytes into a new object on ``backend``.

        Returns the new object, what its backend wrote, and the SHA-256 of what was
        read. The source stream is closed however the copy ends.
        """
        digest = hashlib.sha256()
        stream = await self.read_bytes(entry, 0, max(entry.size - 1, 0))
        async with _closing(stream):

            async def hashed() -> AsyncIterator[bytes]:
                async for chunk in stream:
                    digest.update(chunk)
                    yield chunk

            target, written = await backend.write_new(entry.path, hashed())
        return target, written, digest.hexdigest()

    # Deleting

    async def delete(self, user: User, path: str, *, recursive: bool, want_dir: bool) -> None:
        """Delete a file or an empty directory (a whole subtree with ``recursive``).

        A file's object is removed before the answer; a subtree's rows go in one
        transaction and its objects are left to the runtime's :class:`Reclaimer`, so
        the answer does not wait on them.

        Raises:
            DirectoryNotEmpty: a non-empty directory without ``recursive``.
        """
        if path == paths.ROOT:
            raise BadRequest("the root directory cannot be deleted")
        async with self._locked(path):
            resolved = await self._decide_use(user, path)
            entry = resolved.entry
            assert entry is not None and resolved.parent is not None
            if want_dir and not entry.is_dir:
                raise NotADirectory(f"{path} is not a directory")
            permissions.require_delete(user, resolved.parent, entry)
            if not entry.is_dir:
                removed: Entry | None = await self.store.delete(path)
            elif not recursive:
                if await self.store.has_children(path):
                    raise DirectoryNotEmpty(f"{path} is not empty")
                removed = await self.store.delete(path)
            else:
                await self._check_subtree_delete(user, entry)
                below = await self.store.delete_tree(path)
                self.rt.reclaimer.reclaim(below)
                removed = None
        if removed is not None:
            await self._discard_entry(removed)
        self.rt.metrics.file_operations.labels("delete", entry.backend).inc()

    async def _check_subtree_delete(self, user: User, top: Entry) -> None:
        """``rm -r`` rules: every directory inside needs r, w and x, and the sticky rule.

        The directories are read a page at a time; a directory sorts before everything
        below it, so each one's parent has been seen (and checked) when it comes. A
        file then needs nothing its directory has not shown (w and x on it), but for the
        sticky rule: only the files of sticky directories the user does not own are
        read, so a tree of 100,000 files costs a read of its directories.
        """
        if user.is_root:
            return
        permissions.require(user, top, READ | WRITE | EXECUTE, "remove from")
        directories = {top.path: top}
        after: str | None = None
        while page := await self.store.list_tree(
            top.path, limit=LISTING_PAGE, after=after, directories_only=True
        ):
            for entry in page:
                permissions.require_delete(user, directories[paths.parent(entry.path)], entry)
                permissions.require(user, entry, READ | WRITE | EXECUTE, "remove from")
                directories[entry.path] = entry
            after = page[-1].path
        for directory in directories.values():
            if directory.mode & permissions.STICKY and user.name != directory.owner:
                await self._check_sticky_children(user, directory)

    async def _check_sticky_children(self, user: User, directory: Entry) -> None:
        """The sticky rule for each entry of ``directory``."""
        after: str | None = None
        while page := await self.store.list_children(
            directory.path, limit=LISTING_PAGE, after=after
        ):
            for entry in page:
                permissions.require_delete(user, directory, entry)
            after = page[-1].path

    # Plumbing

    @asynccontextmanager
    async def _locked(self, *keys: str) -> AsyncIterator[None]:
        """Hold the locks of ``keys`` (sorted, so two movers never deadlock), with metrics."""
        metrics = self.rt.metrics
        timeout = self.settings.dlm.lock_wait_timeout
        async with AsyncExitStack() as stack:
            started = time.perf_counter()
            try:
                await stack.enter_async_context(
                    self.rt.locks.hold([f"path:{key}" for key in keys], timeout=timeout)
                )
            except CallFSError as exc:
                metrics.lock_operations.labels("acquire", type(exc).__name__).inc()
                raise
            metrics.lock_operations.labels("acquire", "ok").inc()
            metrics.lock_duration.labels("acquire").observe(time.perf_counter() - started)
            metrics.active_locks.inc()
            stack.callback(metrics.active_locks.dec)
            stack.callback(metrics.lock_operations.labels("release", "ok").inc)
            yield

    async def _discard_entry(self, entry: Entry) -> None:
        ref = _ref(entry)
        if ref is not None:
            await self._discard(ref)

    async def _discard(self, ref: ObjectRef) -> None:
        """Remove bytes no metadata points to any more; failures are left to the reconciler."""
        try:
            await asyncio.shield(self.rt.reclaimer.remove(ref))
        except asyncio.CancelledError as exc:
            reclaimer.given_up(ref, exc)


LISTING_PAGE = 1000
"""Rows read from the store per page of a listing: a page is encoded on the event loop
between two store reads (about a millisecond for a non-recursive listing's rows), so it
stays small enough not to hold the loop for long."""


def _entry_path(entry: Entry) -> str:
    return entry.path


def _row_path(row: tuple[str, bytes]) -> str:
    return row[0]


class Listing:
    """The entries below one directory as one user may see them, in path order, read
    from the store a page at a time (so a listing's size never bounds memory).

    The directory's children need ``r`` on it (checked when the listing is made); an
    entry deeper down shows only when the user may list and enter (``r`` and ``x``)
    every directory from the listed one to its parent. That holds whatever ``after``
    names: the ancestors of a page that starts mid-tree are looked up and checked,
    never assumed. A non-recursive listing (``max_depth`` 0) reads the ``parent``
    index and needs no such checks.
    """

    def __init__(
        self,
        fs: FileSystem,
        user: User,
        directory: Entry,
        max_depth: int,
        limit: int | None,
        after: str | None,
    ) -> None:
        self.fs = fs
        self.user = user
        self.directory = directory
        self.max_depth = max_depth
        self.limit = limit
        self.after = after
        self.next_after: str | None = None
        """After :meth:`pages` has run out: the path to continue after, when ``limit``
        (or the ``limit`` given to :meth:`pages`) cut the listing short."""
        self._first: list[tuple[str, bytes]] | None = None
        """What :meth:`count` read of a one-page listing (``limit`` + 1 rows asked for),
        kept for :meth:`encoded`."""

    async def count(self) -> int:
        """How many entries :meth:`pages` would yield now: for a non-recursive listing
        one read of its page when ``limit`` fits one (kept for :meth:`encoded`, which
        then reads nothing more), else one count query; for a recursive one a walk of
        the pages (nothing kept).
        """
        if self.max_depth == 0:
            if self.limit is not None and self.limit <= LISTING_PAGE:
                # The page and the probe for a next one, in the read the walk starts with.
                self._first = await self.fs.store.list_children_encoded(
                    self.directory.path, limit=self.limit + 1, after=self.after
                )
                return min(len(self._first), self.limit)
            return await self.fs.store.count_children(
                self.directory.path, limit=self.limit, after=self.after
            )
        total = 0
        async for page in self.pages():
            total += len(page)
        return total

    async def pages(self, limit: int | None = None) -> AsyncIterator[list[Entry]]:
        """The visible entries in path order, a non-empty page at a time, at most
        ``limit`` (default: the listing's own) in all; sets :attr:`next_after`.
        """
        store = self.fs.store
        path = self.directory.path
        # Directory -> whether user may list and enter it and each one above it up to path.
        entered = {path: permissions.may(self.user, self.directory, EXECUTE)}

        async def read(want: int, cursor: str | None) -> tuple[list[Entry], int, str | None]:
            batch = await store.list_tree(path, max_depth=self.max_depth, limit=want, after=cursor)
            visible = batch if self.max_depth == 0 else await self._visible(batch, entered)
            return visible, len(batch), batch[-1].path if batch else None

        async for page in self._walk(read, _entry_path, limit):
            yield page

    async def encoded(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """:meth:`pages` as API.md's metadata objects in compact JSON, each page the
        comma-separated members of an array; a non-recursive listing has the store build
        them from its rows (no ``Entry`` each, and PostgreSQL writes the JSON itself).
        """
        if self.max_depth:
            async for page in self.pages(limit):
                yield orjson.dumps([entry.to_json() for entry in page])[1:-1]
            return
        store = self.fs.store
        path = self.directory.path

        async def read(
            want: int, cursor: str | None
        ) -> tuple[list[tuple[str, bytes]], int, str | None]:
            batch = self._kept(want, cursor)
            if batch is None:
                batch = await store.list_children_encoded(path, limit=want, after=cursor)
            return batch, len(batch), batch[-1][0] if batch else None

        async for rows in self._walk(read, _row_path, limit):
            yield b",".join(encoded for _path, encoded in rows)

    def _kept(self, want: int, cursor: str | None) -> list[tuple[str, bytes]] | None:
        """The first ``want`` rows after ``cursor`` out of what :meth:`count` read, if
        they are all there (it asked for as many, or it read to the end); taken once."""
        rows, self._first = self._first, None
        if rows is None or cursor != self.after:
            return None
        assert self.limit is not None  # count() reads ahead for a limited listing alone
        asked = self.limit + 1
        if want <= asked or len(rows) < asked:
            return rows[:want]
        return None

    async def _walk(
        self,
        read: Callable[[int, str | None], Awaitable[tuple[list[T], int, str | None]]],
        path_of: Callable[[T], str],
        limit: int | None,
    ) -> AsyncIterator[list[T]]:
        """Page through the store with ``read(want, after)`` (what it read: the visible
        part, how many rows, the last row's path) until the end or ``limit`` (default:
        the listing's own); sets :attr:`next_after` when ``limit`` cut it short.
        """
        remaining = self.limit if limit is None else limit
        self.next_after = None
        last: str | None = None
        cursor = self.after
        while True:
            # One more than a limited walk still needs: whether it ends there is known
            # from the same read.
            want = LISTING_PAGE if remaining is None else min(LISTING_PAGE, remaining) + 1
            visible, read_rows, cursor = await read(want, cursor)
            if remaining is not None and len(visible) > remaining:
                if remaining:
                    yield visible[:remaining]
                    last = path_of(visible[remaining - 1])
                self.next_after = last
                return
            if visible:
                yield visible
                last = path_of(visible[-1])
                if remaining is not None:
                    remaining -= len(visible)
            if read_rows < want:
                return

    async def _visible(self, batch: list[Entry], entered: dict[str, bool]) -> list[Entry]:
        """The entries of ``batch`` the user may see; ``entered`` learns its directories."""
        await self._learn_ancestors(batch, entered)
        path = self.directory.path
        visible = []
        for entry in batch:
            parent = paths.parent(entry.path)
            if entry.is_dir:
                entered[entry.path] = self._may_enter(self.user, entry, entered)
            if parent == path or entered.get(parent, False):
                visible.append(entry)
        return visible

    async def _learn_ancestors(self, batch: list[Entry], entered: dict[str, bool]) -> None:
        """Fill ``entered`` for the ancestors of ``batch`` neither it nor the batch holds.

        One lookup for all of them; an ancestor gone meanwhile counts as not entered.
        """
        in_batch = {entry.path for entry in batch}
        unknown: set[str] = set()
        for entry in batch:
            ancestor = paths.parent(entry.path)
            while ancestor not in entered and ancestor not in in_batch and ancestor not in unknown:
                unknown.add(ancestor)
                ancestor = paths.parent(ancestor)
        if not unknown:
            return
        found = await self.fs.store.get_many(sorted(unknown))
        # Sorted, a directory comes before everything below it.
        for ancestor in sorted(unknown):
            row = found.get(ancestor)
            entered[ancestor] = row is not None and self._may_enter(self.user, row, entered)

    @staticmethod
    def _may_enter(user: User, entry: Entry, entered: dict[str, bool]) -> bool:
        """Whether ``user`` may list and enter ``entry`` and every directory above it."""
        return (
            entry.is_dir
            and entered.get(paths.parent(entry.path), False)
            and permissions.may(user, entry, READ | EXECUTE)
        )


def _created(
    user: User,
    path: str,
    kind: EntryType,
    mode: int,
    *,
    now: datetime | None = None,
    **fields: Any,
) -> Entry:
    """A new entry owned by ``user`` (primary group), its times both ``now``."""
    when = now or utcnow()
    return Entry(
        path=path,
        type=kind,
        mode=mode,
        owner=user.name,
        group=user.primary_group,
        mtime=when,
        ctime=when,
        **fields,
    )


def _ref(entry: Entry) -> ObjectRef | None:
    if entry.is_dir or entry.object_key is None:
        return None
    return ObjectRef(entry.backend, entry.object_key, entry.holders)


def _verify_copy(entry: Entry, written: Written, read_sha256: str, *, sha256_etags: bool) -> None:
    """Check a copy against the file it was made from.

    The copy must hold as many bytes as the metadata says, the same bytes as were
    read, and, where the source backend's ETags are SHA-256 (``sha256_etags``), the
    bytes the metadata vouches for; other ETags (S3's) say nothing of the bytes, so
    there size is what counts.

    Raises:
        BackendUnavailable: the copy does not match; a backend misbehaved, not the client.
    """
    problems = []
    if written.size != entry.size:
        problems.append(f"{written.size} bytes copied, {entry.size} expected")
    if written.sha256 != read_sha256:
        problems.append("the copy differs from the bytes read")
    if sha256_etags and read_sha256 != entry.etag:
        problems.append("the stored bytes differ from their recorded SHA-256")
    if problems:
        logger.error(
            "copy of %s (object %s on %s) failed verification: %s",
            entry.path,
            entry.object_key,
            entry.instance_id or entry.backend,
            "; ".join(problems),
        )
        raise BackendUnavailable("the copy did not verify; the file was left where it was")


@asynccontextmanager
async def _closing(stream: AsyncIterator[bytes]) -> AsyncIterator[None]:
    """Close ``stream`` when the block ends, however it ends (see :func:`close_stream`)."""
    try:
        yield
    finally:
        await close_stream(stream)


async def _within(
    chunks: AsyncIterable[bytes], limit: int
) -> tuple[bytes | None, AsyncIterable[bytes]]:
    """The whole of ``chunks`` if it ends within ``limit`` bytes; otherwise None, and
    the stream again from its first byte (what was read of it replayed first).
    """
    source = aiter(chunks)
    head: list[bytes] = []
    size = 0
    async for chunk in source:
        head.append(chunk)
        size += len(chunk)
        if size > limit:
            return None, _replayed(head, source)
    return b"".join(head), chunks


async def _replayed(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    head.clear()
    async for chunk in rest:
        yield chunk
