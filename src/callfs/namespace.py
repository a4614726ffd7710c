"""Path lookups both web roles share: an entry with its ancestors, as a user may see it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from callfs import paths, permissions
from callfs.backends.base import Backend, ObjectRef
from callfs.entry import Entry
from callfs.errors import NotADirectory, NotFound
from callfs.metadata.base import MetadataStore
from callfs.objectcache import ObjectCache, one_chunk
from callfs.permissions import User


@dataclass(frozen=True)
class Resolved:
    """A path with its entry (None when absent), the ancestors that exist and those missing."""

    path: str
    entry: Entry | None
    ancestors: list[Entry]
    missing: list[str]

    @property
    def parent(self) -> Entry | None:
        """The parent directory's entry, when it exists."""
        return self.ancestors[-1] if not self.missing and self.ancestors else None


async def resolve(store: MetadataStore, path: str) -> Resolved:
    """Look up ``path`` and its ancestors in one round trip.

    Raises:
        NotADirectory: an ancestor is a file.
    """
    chain = paths.ancestors(path)
    found = await store.get_many([*chain, path])
    ancestors: list[Entry] = []
    missing: list[str] = []
    for ancestor in chain:
        entry = found.get(ancestor)
        if entry is None or missing:
            missing.append(ancestor)
            continue
        if not entry.is_dir:
            raise NotADirectory(f"{ancestor} is not a directory")
        ancestors.append(entry)
    return Resolved(path, None if missing else found.get(path), ancestors, missing)


async def lookup(store: MetadataStore, user: User, path: str) -> Resolved:
    """Resolve ``path`` for use: every ancestor must exist and be traversable.

    Raises:
        NotFound: the path or an ancestor does not exist (or an ancestor is a file).
        PermissionDenied: an ancestor lacks ``x`` for ``user``.
    """
    try:
        resolved = await resolve(store, path)
    except NotADirectory:
        raise NotFound(f"{path} not found") from None
    permissions.require_traverse(user, resolved.ancestors)
    if resolved.entry is None:
        raise NotFound(f"{path} not found")
    return resolved


async def open_bytes(
    backend: Backend,
    entry: Entry,
    start: int = 0,
    end: int | None = None,
    *,
    cache: ObjectCache | None = None,
) -> AsyncIterator[bytes]:
    """Open a file's bytes ``start..end`` (inclusive); errors raise before the first chunk.

    A small file is served from ``cache`` (and read whole into it on a miss).
    """
    last = entry.size - 1 if end is None else end
    if entry.size == 0 or entry.object_key is None or last < start:
        return one_chunk(b"")
    ref = ObjectRef(entry.backend, entry.object_key, entry.holders, etag=entry.etag)
    if cache is not None and cache.holds(entry.size):
        sha256 = entry.etag if backend.sha256_etags else None
        data = await cache.read(backend, ref, entry.size, sha256)
        return one_chunk(data[start : last + 1])
    return await backend.read(ref, offset=start, length=last - start + 1)
