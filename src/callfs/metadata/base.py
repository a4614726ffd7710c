"""The metadata-store interface that PostgreSQL and SQLite both implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import orjson

from callfs.backends.base import ObjectRef
from callfs.entry import BackendName, Entry, holders
from callfs.errors import BadRequest

ConsumeOutcome = Literal["consumed", "used", "expired", "not_found"]


def recorded_replicas(instance_id: str | None, replicas: Sequence[str]) -> tuple[str, ...]:
    """The replicas a row records, as its entry should carry them.

    ``()`` when they do not start at the row's ``instance_id``: a version that knew no
    replicas rewrote the row's object (during a rolling upgrade) and left them behind,
    so the row is held by its ``instance_id`` alone (see :attr:`Entry.holders`).
    """
    if not replicas or replicas[0] != instance_id:
        return ()
    return tuple(replicas)


def removed_object(
    backend: BackendName, object_key: str, instance_id: str | None, replicas: Sequence[str]
) -> ObjectRef:
    """The object a removed file's row pointed to (its fields as stored), as
    :meth:`MetadataStore.delete_tree` returns it."""
    return ObjectRef(
        backend, object_key, holders(instance_id, recorded_replicas(instance_id, replicas))
    )


def placement(replicas: Sequence[str]) -> tuple[str, ...]:
    """``replicas`` as :meth:`MetadataStore.set_replicas` records them.

    Raises:
        BadRequest: ``replicas`` is empty (a file's object is held somewhere).
    """
    recorded = tuple(replicas)
    if not recorded:
        raise BadRequest("a replica set names at least one storage node")
    return recorded


@dataclass(frozen=True)
class LinkRecord:
    """One single-use download link.

    ``entry_id`` is the file entry it was issued for (see :class:`~callfs.entry.Entry`);
    None only for a link written by a version that did not record it.
    """

    token_id: str
    path: str
    expires_at: datetime
    created_by: str
    created_at: datetime
    used_at: datetime | None = None
    entry_id: str | None = None


class MetadataStore(ABC):
    """Where the namespace lives. Every mutation is one transaction.

    Paths are normalized (:mod:`callfs.paths`); the root ``/`` always exists
    (created by :meth:`open` with mode 1777, owner ``root``). Listings are sorted
    by path (bytewise) and paged by ``after``: only paths greater than it.
    """

    @abstractmethod
    async def open(self) -> None:
        """Connect, apply pending migrations, ensure the root exists."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise BackendUnavailable unless the store answers."""

    @abstractmethod
    async def get(self, path: str) -> Entry | None:
        """The entry at ``path``, or None."""

    @abstractmethod
    async def get_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        """The entries that exist among ``paths`` (used for ancestors in one round trip)."""

    @abstractmethod
    async def list_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[Entry]:
        """Immediate children of the directory ``path``, sorted by path (the ``parent`` index)."""

    async def list_children_encoded(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[tuple[str, bytes]]:
        """:meth:`list_children` as pairs: the path, and API.md's metadata object as compact
        JSON (what ``orjson.dumps(entry.to_json())`` writes), which a store builds straight
        from its rows (the gateway copies it into a listing's body as it is).
        """
        children = await self.list_children(path, limit=limit, after=after)
        return [(entry.path, orjson.dumps(entry.to_json())) for entry in children]

    @abstractmethod
    async def count_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> int:
        """How many rows :meth:`list_children` would return for the same arguments."""

    @abstractmethod
    async def list_tree(
        self,
        path: str,
        *,
        max_depth: int | None = None,
        limit: int | None = None,
        after: str | None = None,
        directories_only: bool = False,
    ) -> list[Entry]:
        """Descendants of ``path`` sorted by path; ``max_depth`` 0 = children only (read as
        :meth:`list_children` reads them), None = all; with ``directories_only``, only
        the directories among them (``limit`` counts those)."""

    @abstractmethod
    async def has_children(self, path: str) -> bool:
        """Whether the directory ``path`` holds anything."""

    @abstractmethod
    async def create(
        self, entry: Entry, parents: Sequence[Entry] = (), *, content: bytes | None = None
    ) -> None:
        """Insert ``entry`` after inserting any of ``parents`` that do not exist yet.

        With ``content``, the file's bytes are kept in the store, under its
        ``object_key``, in the same transaction (see :meth:`read_content`).

        Every directory a new row hangs off (``entry``'s parent, each of ``parents``
        and their parents) must then exist as a directory.

        Raises:
            AlreadyExists: ``entry.path`` exists.
            NotADirectory: one of those directories exists as a file.
            NotFound: one of those directories does not exist.
        """

    @abstractmethod
    async def update(
        self, entry: Entry, *, expected: Entry | None = None, content: bytes | None = None
    ) -> None:
        """Overwrite the row at ``entry.path`` with ``entry``'s fields (all but ``type``
        and ``entry_id``: a row stays the entry it was created as).

        With ``content``, the file's new bytes are kept in the store under its new
        ``object_key``, in the same transaction. Bytes the row kept in the store for
        another key go in that transaction too, as they do when a row is deleted.

        With ``expected`` (the row as the caller decided from it), only while the row
        still holds that object key and etag: a success then replaced exactly
        ``expected``'s object, so that object, and no other, may be discarded.

        Raises:
            NotFound: no row at that path.
            EntryChanged: ``expected`` is given and the row holds another object.
        """

    @abstractmethod
    async def set_replicas(self, path: str, object_key: str, replicas: Sequence[str]) -> bool:
        """Record that the object ``object_key`` of the file at ``path`` is held by
        ``replicas`` (in placement order; the first becomes ``instance_id``), only while
        the row still holds that object. Returns whether it did (False: the file is gone
        or holds another object now). Nothing else of the row changes (mode, times,
        size, etag stay).

        Raises:
            BadRequest: ``replicas`` is empty.
        """

    @abstractmethod
    async def delete(self, path: str) -> Entry:
        """Remove one entry (a file, or an empty directory) and return it.

        Raises:
            BadRequest: ``path`` is the root.
            NotFound: no row at that path.
            DirectoryNotEmpty: a directory with children.
        """

    @abstractmethod
    async def delete_tree(self, path: str) -> list[ObjectRef]:
        """Remove ``path`` and everything below it; return the objects its files pointed
        to (each held by the file's :attr:`~Entry.holders`), in the files' path order.

        Only those, not the removed entries: a subtree of 100,000 files would otherwise
        be decoded into as many entries on the event loop, for their objects alone.

        Raises:
            BadRequest: ``path`` is the root.
        """

    @abstractmethod
    async def move(
        self, source: str, destination: str, *, replace: bool = False, parents: Sequence[Entry] = ()
    ) -> list[Entry]:
        """Move ``source`` (and its subtree) to ``destination`` in one transaction.

        ``parents`` are created first when missing (checked as in :meth:`create`).
        With ``replace``, an existing file at ``destination`` (or an empty directory,
        when moving a directory) is removed and returned so its bytes can be deleted.
        Times and entry ids are kept. Moving a path onto itself changes nothing and
        returns ``[]``.

        Raises:
            BadRequest: ``source`` or ``destination`` is the root, or ``destination``
                lies inside ``source``.
            NotFound: ``source`` does not exist, or a destination parent is missing.
            NotADirectory: a destination parent is a file, or a directory would
                replace a file.
            AlreadyExists: ``destination`` exists and ``replace`` is false.
            IsADirectory: a file would replace a directory.
            DirectoryNotEmpty: the directory to replace has children.
        """

    @abstractmethod
    async def read_content(self, object_key: str) -> bytes | None:
        """The bytes kept in the store under ``object_key`` (a small file's, given with
        :meth:`create` or :meth:`update`), or None when none are.

        They stay while a row points at them: deleting the row, or pointing it at
        another object, removes them in the same transaction; moves keep them.
        """

    @abstractmethod
    async def object_keys(self, backend: str, instance_id: str | None) -> set[str]:
        """Every object key the namespace points to on one backend node (for the reconciler)."""

    async def referenced_keys(
        self, backend: str, instance_id: str | None, keys: Sequence[str]
    ) -> set[str]:
        """Those of ``keys`` a row points to on one backend node, as committed now (the
        reconciler's last look before it deletes). The default asks :meth:`object_keys`.
        """
        return set(keys) & await self.object_keys(backend, instance_id)

    # Links

    @abstractmethod
    async def create_link(self, link: LinkRecord) -> None:
        """Store a new link.

        Raises:
            AlreadyExists: a link with that ``token_id`` exists.
        """

    @abstractmethod
    async def consume_link(
        self, token_id: str, now: datetime
    ) -> tuple[ConsumeOutcome, LinkRecord | None]:
        """Mark a link used by one atomic conditional update; say what happened.

        Exactly one of any number of concurrent calls gets ``"consumed"`` (with the
        record); the others get ``"used"``, ``"expired"`` (with the record) or
        ``"not_found"`` (with None).
        """

    @abstractmethod
    async def release_link(self, token_id: str) -> None:
        """Un-burn a link whose download failed before the first byte."""

    @abstractmethod
    async def purge_links(self, now: datetime, batch: int) -> int:
        """Delete up to ``batch`` links expired at ``now``, used or not; return how many went.

        A used link that has not expired stays, so it keeps answering "used".
        """
