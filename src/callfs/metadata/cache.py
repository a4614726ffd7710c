"""A small TTL + LRU cache of ``get`` results in front of a metadata store.

Only entries that exist are cached. Every mutation made through this wrapper drops
the paths it touched here and then announces them on the cache bus, and every
announcement (from any replica) drops that path and everything cached below it, so
a replica serves a stale entry only while an announcement is in flight. While the
bus is cut off (announcements may be lost) the cache is bypassed, and the bus drops
it whole before it serves again.

The cache serves reads only: a mutation decides from the store itself (``inner``),
so a lost announcement can cost speed, never data.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from callfs.backends.base import ObjectRef
from callfs.coordination.base import CacheBus
from callfs.entry import Entry
from callfs.metadata.base import ConsumeOutcome, LinkRecord, MetadataStore
from callfs.paths import ROOT

logger = logging.getLogger(__name__)

Counter = Callable[[], object]


class CachedMetadataStore(MetadataStore):
    """``inner`` with ``get`` results cached for ``ttl`` seconds, at most ``size`` of them.

    ``ttl`` or ``size`` 0 turns caching off. ``on_hit``/``on_miss`` count lookups
    (for metrics); ``clock`` is the monotonic time source.
    """

    def __init__(
        self,
        inner: MetadataStore,
        bus: CacheBus,
        *,
        ttl: float,
        size: int,
        on_hit: Counter | None = None,
        on_miss: Counter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.bus = bus
        self.ttl = ttl
        self.size = size
        self._on_hit = on_hit
        self._on_miss = on_miss
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Entry, float]] = OrderedDict()
        # Bumped by every invalidation: a lookup that raced one does not store its result.
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.size > 0

    @property
    def serving(self) -> bool:
        """Whether lookups may be answered here: caching is on and the bus is connected."""
        return self.enabled and self.bus.connected

    def __len__(self) -> int:
        return len(self._entries)

    # Lifecycle

    async def open(self) -> None:
        await self.inner.open()
        if self.enabled:
            await self.bus.subscribe(self.invalidate)

    async def close(self) -> None:
        self._entries.clear()
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    # The cache

    def invalidate(self, path: str) -> None:
        """Forget ``path`` and every cached path below it."""
        self._generation += 1
        if path == ROOT:
            self._entries.clear()
            return
        self._entries.pop(path, None)
        below = path + "/"
        for cached in [p for p in self._entries if p.startswith(below)]:
            del self._entries[cached]

    def _lookup(self, path: str, now: float) -> Entry | None:
        cached = self._entries.get(path)
        if cached is None:
            return None
        entry, expires = cached
        if expires <= now:
            del self._entries[path]
            return None
        self._entries.move_to_end(path)
        return entry

    def _remember(self, entries: Iterable[Entry], now: float) -> None:
        expires = now + self.ttl
        for entry in entries:
            self._entries[entry.path] = (entry, expires)
            self._entries.move_to_end(entry.path)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def _count(self, counter: Counter | None, times: int = 1) -> None:
        if counter is not None:
            for _ in range(times):
                counter()

    async def _announce(self, *changed: str) -> None:
        """Tell every replica; the change is committed, so a lost announcement only ages out."""
        for path in changed:
            try:
                await self.bus.publish(path)
            except Exception:
                logger.warning("cache invalidation for %s not announced", path, exc_info=True)

    # Reads

    async def get(self, path: str) -> Entry | None:
        if not self.serving:
            return await self.inner.get(path)
        now = self._clock()
        entry = self._lookup(path, now)
        if entry is not None:
            self._count(self._on_hit)
            return entry
        self._count(self._on_miss)
        generation = self._generation
        entry = await self.inner.get(path)
        if entry is not None and generation == self._generation:
            self._remember([entry], now)
        return entry

    async def get_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        if not self.serving:
            return await self.inner.get_many(paths)
        now = self._clock()
        found: dict[str, Entry] = {}
        missing: list[str] = []
        for path in dict.fromkeys(paths):
            entry = self._lookup(path, now)
            if entry is None:
                missing.append(path)
            else:
                found[path] = entry
        self._count(self._on_hit, len(found))
        if not missing:
            return found
        self._count(self._on_miss, len(missing))
        generation = self._generation
        fetched = await self.inner.get_many(missing)
        if generation == self._generation:
            self._remember(fetched.values(), now)
        found.update(fetched)
        return found

    async def list_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[Entry]:
        return await self.inner.list_children(path, limit=limit, after=after)

    async def list_children_encoded(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[tuple[str, bytes]]:
        return await self.inner.list_children_encoded(path, limit=limit, after=after)

    async def count_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> int:
        return await self.inner.count_children(path, limit=limit, after=after)

    async def list_tree(
        self,
        path: str,
        *,
        max_depth: int | None = None,
        limit: int | None = None,
        after: str | None = None,
        directories_only: bool = False,
    ) -> list[Entry]:
        return await self.inner.list_tree(
            path,
            max_depth=max_depth,
            limit=limit,
            after=after,
            directories_only=directories_only,
        )

    async def has_children(self, path: str) -> bool:
        return await self.inner.has_children(path)

    async def object_keys(self, backend: str, instance_id: str | None) -> set[str]:
        return await self.inner.object_keys(backend, instance_id)

    async def referenced_keys(
        self, backend: str, instance_id: str | None, keys: Sequence[str]
    ) -> set[str]:
        return await self.inner.referenced_keys(backend, instance_id, keys)

    # Mutations: forget here whatever happens (a failed commit may still have landed),
    # announce once the store said yes.

    async def create(
        self, entry: Entry, parents: Sequence[Entry] = (), *, content: bytes | None = None
    ) -> None:
        try:
            await self.inner.create(entry, parents, content=content)
        finally:
            self.invalidate(entry.path)
        await self._announce(entry.path)

    async def update(
        self, entry: Entry, *, expected: Entry | None = None, content: bytes | None = None
    ) -> None:
        try:
            await self.inner.update(entry, expected=expected, content=content)
        finally:
            self.invalidate(entry.path)
        await self._announce(entry.path)

    async def read_content(self, object_key: str) -> bytes | None:
        return await self.inner.read_content(object_key)

    async def set_replicas(self, path: str, object_key: str, replicas: Sequence[str]) -> bool:
        try:
            recorded = await self.inner.set_replicas(path, object_key, replicas)
        finally:
            self.invalidate(path)
        await self._announce(path)
        return recorded

    async def delete(self, path: str) -> Entry:
        try:
            removed = await self.inner.delete(path)
        finally:
            self.invalidate(path)
        await self._announce(path)
        return removed

    async def delete_tree(self, path: str) -> list[ObjectRef]:
        try:
            removed = await self.inner.delete_tree(path)
        finally:
            self.invalidate(path)
        await self._announce(path)
        return removed

    async def move(
        self, source: str, destination: str, *, replace: bool = False, parents: Sequence[Entry] = ()
    ) -> list[Entry]:
        try:
            replaced = await self.inner.move(source, destination, replace=replace, parents=parents)
        finally:
            self.invalidate(source)
            self.invalidate(destination)
        await self._announce(source, destination)
        return replaced

    # Links are never cached.

    async def create_link(self, link: LinkRecord) -> None:
        await self.inner.create_link(link)

    async def consume_link(
        self, token_id: str, now: datetime
    ) -> tuple[ConsumeOutcome, LinkRecord | None]:
        return await self.inner.consume_link(token_id, now)

    async def release_link(self, token_id: str) -> None:
        await self.inner.release_link(token_id)

    async def purge_links(self, now: datetime, batch: int) -> int:
        return await self.inner.purge_links(now, batch)
