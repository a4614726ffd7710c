"""Small objects' bytes kept in memory, so a hot small file is served without a backend
call.

Every version of a file is stored under a fresh object key and an object is never
changed in place, so a cached object can never be stale: there is nothing to
invalidate. A file that is replaced points at a new key, and the old key's bytes
simply age out. The cache holds whole objects of at most ``max_object`` bytes, at
most ``capacity`` bytes in all, least recently used first out; a capacity of 0
turns it off.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

from callfs.backends.base import Backend, ObjectRef, close_stream
from callfs.errors import BackendUnavailable
from callfs.metrics import Metrics

logger = logging.getLogger(__name__)

Key = tuple[str, str]


class ObjectCache:
    """A byte-bounded LRU of whole small objects, by ``(backend, object key)``."""

    def __init__(self, capacity: int, max_object: int, metrics: Metrics | None = None) -> None:
        self.capacity = capacity
        self.max_object = min(max_object, capacity)
        self.metrics = metrics
        self._objects: OrderedDict[Key, bytes] = OrderedDict()
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._size

    def holds(self, size: int) -> bool:
        """Whether an object of ``size`` bytes is one this cache keeps."""
        return 0 < size <= self.max_object

    def get(self, key: Key) -> bytes | None:
        """The object's bytes, or None when they are not here."""
        data = self._objects.get(key)
        if data is not None:
            self._objects.move_to_end(key)
        if self.metrics is not None:
            (
                self.metrics.object_cache_hits
                if data is not None
                else self.metrics.object_cache_misses
            ).inc()
        return data

    def put(self, key: Key, data: bytes) -> None:
        """Keep ``data`` as the whole object ``key``, making room by age."""
        if not self.holds(len(data)) or key in self._objects:
            return
        self._objects[key] = data
        self._size += len(data)
        while self._size > self.capacity:
            _, evicted = self._objects.popitem(last=False)
            self._size -= len(evicted)
        if self.metrics is not None:
            self.metrics.object_cache_bytes.set(self._size)

    async def read(self, backend: Backend, ref: ObjectRef, size: int, sha256: str | None) -> bytes:
        """The whole object ``ref`` of ``size`` bytes, from here or read once from
        ``backend`` and kept.

        Bytes read are kept only when they are exactly ``size`` long and, when
        ``sha256`` is given (the backend's etags are SHA-256), hash to it: a cached
        object is served without the backend's checks, so only a verified one is.

        Raises:
            Whatever ``backend.read`` raises; BackendUnavailable when the bytes read do
            not match.
        """
        key = (ref.backend, ref.key)
        cached = self.get(key)
        if cached is not None:
            return cached
        stream = await backend.read(ref, offset=0, length=size)
        try:
            data = b"".join([chunk async for chunk in stream])
        finally:
            await close_stream(stream)
        if len(data) != size or (sha256 is not None and hashlib.sha256(data).hexdigest() != sha256):
            logger.error(
                "object %s on %s read back %d bytes not matching its metadata",
                ref.key,
                ref.backend,
                len(data),
            )
            raise BackendUnavailable("the stored bytes do not match the file's metadata")
        self.put(key, data)
        return data


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a stream of one chunk (none when empty)."""
    if data:
        yield data
