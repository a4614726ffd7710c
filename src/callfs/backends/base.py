"""The byte-storage interface every backend implements, so callers never know which one."""

from __future__ import annotations

import asyncio
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from callfs.entry import BackendName
from callfs.errors import CallFSError

DELETES_IN_FLIGHT = 16
"""The calls :meth:`Backend.delete_many` makes at once when a backend removes objects
one by one."""


@dataclass(frozen=True)
class ObjectRef:
    """Where one file's bytes are: a backend, a key and, on storage nodes, the nodes
    holding a copy (its replicas, in placement order; none for S3).

    ``etag`` is the ETag the object was stored with, when the caller knows it (on
    storage nodes its SHA-256, which copies between replicas are checked against).
    It names no other object, so two refs differing only in it are equal.
    """

    backend: BackendName
    key: str
    replicas: tuple[str, ...] = ()
    etag: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.replicas, str):
            raise TypeError("replicas is a tuple of instance ids, not one id")

    @property
    def instance_id(self) -> str | None:
        """The node holding the first replica (None for S3)."""
        return self.replicas[0] if self.replicas else None


@dataclass(frozen=True)
class Written:
    """What a finished write reports: size, SHA-256 (hex), the ETag to publish and, on
    storage nodes, the replicas that hold the whole object (in placement order).
    """

    size: int
    sha256: str
    etag: str
    replicas: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredObject:
    """One object as a backend lists it: key, size and when it was last written."""

    key: str
    size: int
    modified: datetime


_OBJECT_KEY = re.compile(r"(?P<a>[0-9a-f]{2})/(?P<b>[0-9a-f]{2})/(?P=a)(?P=b)[0-9a-f]{28}")


def new_object_key() -> str:
    """A fresh opaque key (``ab/cd/<uuid>``): each version of a file gets its own."""
    token = uuid.uuid4().hex
    return f"{token[:2]}/{token[2:4]}/{token}"


def is_object_key(key: str) -> bool:
    """Whether ``key`` has the shape :func:`new_object_key` gives (anything else in a
    volume or bucket was not put there by CallFS, and is never the reconciler's).
    """
    return _OBJECT_KEY.fullmatch(key) is not None


class Backend(ABC):
    """Stores opaque objects. Errors are domain errors (NotFound, BackendUnavailable)."""

    name: ClassVar[BackendName]
    sha256_etags: ClassVar[bool] = False
    """Whether an object's ETag is the SHA-256 of its bytes (so a copy can be checked
    against what the metadata vouches for)."""
    proxied: ClassVar[bool] = False
    """Whether its operations are calls from this process to storage nodes (counted
    in ``callfs_proxy_operations_total`` too)."""

    async def start(self) -> None:
        """Open clients and channels."""

    async def close(self) -> None:
        """Close clients and channels."""

    @abstractmethod
    async def new_object(self, path: str) -> ObjectRef:
        """Choose where a new version of the file at ``path`` goes.

        Raises:
            BackendUnavailable: nowhere can take it (no live node, or all full).
        """

    @abstractmethod
    async def write(self, ref: ObjectRef, chunks: AsyncIterable[bytes]) -> Written:
        """Store ``chunks`` under ``ref`` atomically: all of it, or nothing.

        If ``chunks`` raises (a client broke off) or anything fails, no object and
        no partial data stay behind, and the exception propagates.
        """

    async def write_new(
        self, path: str, chunks: AsyncIterable[bytes], *, prefer: Sequence[str] = ()
    ) -> tuple[ObjectRef, Written]:
        """Place a new version of the file at ``path`` and store ``chunks`` there.

        ``prefer`` names the nodes holding the file's current version: a backend with
        nodes keeps a file on them where it can. Returns where the object went (the
        replicas that took it whole) and what was written; on failure nothing stays
        behind, as with :meth:`write`. A backend with a choice of places may try
        another one when the first fails before taking any byte of ``chunks``.

        Raises:
            BackendUnavailable: nowhere took it.
        """
        ref = await self.new_object(path)
        return ref, await self.write(ref, chunks)

    @abstractmethod
    async def read(
        self, ref: ObjectRef, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Open the object for streaming. Errors surface here, before any byte is
        handed out, so a caller can still answer with a proper status.

        Raises:
            NotFound: the object is missing.
            BackendUnavailable: the node or service does not answer.
        """

    @abstractmethod
    async def delete(self, ref: ObjectRef) -> None:
        """Remove the object; a missing object is not an error."""

    async def delete_many(self, refs: Sequence[ObjectRef]) -> list[tuple[ObjectRef, CallFSError]]:
        """Remove objects nothing points to any more, as few calls as the backend
        allows; a missing object is not an error. Returns those that could not be
        removed, each with why (the reconciler will remove them later).

        Unlike :meth:`delete`, a removal may not be durable when this returns: a crash
        soon after can bring an object back, as an orphan the reconciler removes.
        By default, :meth:`delete` for each, :data:`DELETES_IN_FLIGHT` at a time.
        """

        async def outcome(ref: ObjectRef) -> CallFSError | None:
            try:
                await self.delete(ref)
            except CallFSError as exc:
                return exc
            return None

        failed: list[tuple[ObjectRef, CallFSError]] = []
        for start in range(0, len(refs), DELETES_IN_FLIGHT):
            some = refs[start : start + DELETES_IN_FLIGHT]
            for ref, error in zip(some, await asyncio.gather(*map(outcome, some)), strict=True):
                if error is not None:
                    failed.append((ref, error))
        return failed

    def instances(self) -> list[str | None]:
        """The places :meth:`list_objects` lists one by one: the known storage nodes,
        or ``[None]`` for a backend without nodes.
        """
        return [None]

    @abstractmethod
    def list_objects(self, instance_id: str | None = None) -> AsyncIterator[StoredObject]:
        """Every object stored on one node (``instance_id``; None for S3), streamed in
        no particular order; objects written or removed meanwhile may or may not appear.

        Raises:
            BackendUnavailable: the node or service does not answer (also mid-stream).
        """


class Wrapping(Backend):
    """A backend in front of another, ``inner``: every call passes through, but for
    those a subclass changes."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    # The inner backend's class attributes, read through: a property in place of a
    # ClassVar is what mypy calls an override.
    @property
    def name(self) -> BackendName:  # type: ignore[override]
        return self.inner.name

    @property
    def sha256_etags(self) -> bool:  # type: ignore[override]
        return self.inner.sha256_etags

    @property
    def proxied(self) -> bool:  # type: ignore[override]
        return self.inner.proxied

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def new_object(self, path: str) -> ObjectRef:
        return await self.inner.new_object(path)

    async def write(self, ref: ObjectRef, chunks: AsyncIterable[bytes]) -> Written:
        return await self.inner.write(ref, chunks)

    async def write_new(
        self, path: str, chunks: AsyncIterable[bytes], *, prefer: Sequence[str] = ()
    ) -> tuple[ObjectRef, Written]:
        return await self.inner.write_new(path, chunks, prefer=prefer)

    async def read(
        self, ref: ObjectRef, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return await self.inner.read(ref, offset=offset, length=length)

    async def delete(self, ref: ObjectRef) -> None:
        await self.inner.delete(ref)

    async def delete_many(self, refs: Sequence[ObjectRef]) -> list[tuple[ObjectRef, CallFSError]]:
        return await self.inner.delete_many(refs)

    def instances(self) -> list[str | None]:
        return self.inner.instances()

    def list_objects(self, instance_id: str | None = None) -> AsyncIterator[StoredObject]:
        return self.inner.list_objects(instance_id)


async def prefetched(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pull the first chunk of ``stream`` now, so its errors raise in the caller.

    Returns an iterator that yields that chunk, then the rest.
    """
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    return rest()


async def close_stream(stream: AsyncIterator[bytes]) -> None:
    """Close a stream a backend opened, however far it was read: a stream left unread
    keeps its storage-node call or S3 response open until the garbage collector finds it.
    """
    if isinstance(stream, AsyncGenerator):
        await stream.aclose()
