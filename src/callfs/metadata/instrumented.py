"""A metadata store that counts and times every query of the store it wraps.

It sits under the cache, so ``callfs_metadata_db_queries_total{operation}`` and
``callfs_metadata_db_query_duration_seconds{operation}`` count what reaches the
database, labelled by the interface method (``get``, ``create``, ``consume_link``...).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from callfs.backends.base import ObjectRef
from callfs.entry import Entry
from callfs.metadata.base import ConsumeOutcome, LinkRecord, MetadataStore
from callfs.metrics import Metrics


class InstrumentedMetadataStore(MetadataStore):
    """Delegates to ``inner``, observing each call in ``metrics``."""

    def __init__(self, inner: MetadataStore, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @contextmanager
    def _query(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.db_queries.labels(operation).inc()
            self.metrics.db_duration.labels(operation).observe(time.perf_counter() - started)

    async def open(self) -> None:
        with self._query("open"):
            await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        with self._query("ping"):
            await self.inner.ping()

    async def get(self, path: str) -> Entry | None:
        with self._query("get"):
            return await self.inner.get(path)

    async def get_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        with self._query("get_many"):
            return await self.inner.get_many(paths)

    async def list_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[Entry]:
        with self._query("list_children"):
            return await self.inner.list_children(path, limit=limit, after=after)

    async def list_children_encoded(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> list[tuple[str, bytes]]:
        with self._query("list_children"):
            return await self.inner.list_children_encoded(path, limit=limit, after=after)

    async def count_children(
        self, path: str, *, limit: int | None = None, after: str | None = None
    ) -> int:
        with self._query("count_children"):
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
        with self._query("list_tree"):
            return await self.inner.list_tree(
                path,
                max_depth=max_depth,
                limit=limit,
                after=after,
                directories_only=directories_only,
            )

    async def has_children(self, path: str) -> bool:
        with self._query("has_children"):
            return await self.inner.has_children(path)

    async def create(
        self, entry: Entry, parents: Sequence[Entry] = (), *, content: bytes | None = None
    ) -> None:
        with self._query("create"):
            await self.inner.create(entry, parents, content=content)

    async def update(
        self, entry: Entry, *, expected: Entry | None = None, content: bytes | None = None
    ) -> None:
        with self._query("update"):
            await self.inner.update(entry, expected=expected, content=content)

    async def read_content(self, object_key: str) -> bytes | None:
        with self._query("read_content"):
            return await self.inner.read_content(object_key)

    async def set_replicas(self, path: str, object_key: str, replicas: Sequence[str]) -> bool:
        with self._query("set_replicas"):
            return await self.inner.set_replicas(path, object_key, replicas)

    async def delete(self, path: str) -> Entry:
        with self._query("delete"):
            return await self.inner.delete(path)

    async def delete_tree(self, path: str) -> list[ObjectRef]:
        with self._query("delete_tree"):
            return await self.inner.delete_tree(path)

    async def move(
        self, source: str, destination: str, *, replace: bool = False, parents: Sequence[Entry] = ()
    ) -> list[Entry]:
        with self._query("move"):
            return await self.inner.move(source, destination, replace=replace, parents=parents)

    async def object_keys(self, backend: str, instance_id: str | None) -> set[str]:
        with self._query("object_keys"):
            return await self.inner.object_keys(backend, instance_id)

    async def referenced_keys(
        self, backend: str, instance_id: str | None, keys: Sequence[str]
    ) -> set[str]:
        with self._query("referenced_keys"):
            return await self.inner.referenced_keys(backend, instance_id, keys)

    async def create_link(self, link: LinkRecord) -> None:
        with self._query("create_link"):
            await self.inner.create_link(link)

    async def consume_link(
        self, token_id: str, now: datetime
    ) -> tuple[ConsumeOutcome, LinkRecord | None]:
        with self._query("consume_link"):
            return await self.inner.consume_link(token_id, now)

    async def release_link(self, token_id: str) -> None:
        with self._query("release_link"):
            await self.inner.release_link(token_id)

    async def purge_links(self, now: datetime, batch: int) -> int:
        with self._query("purge_links"):
            return await self.inner.purge_links(now, batch)
