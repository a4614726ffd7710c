"""The storage-node backend as readers see it: objects on the nodes, and the bytes of
small files that the metadata store keeps itself.

A file of at most ``backend.inline_max_bytes`` bytes is written by the gateway into the
metadata store, in the transaction that commits its entry (see
:meth:`~callfs.metadata.base.MetadataStore.create`); its entry names no storage node.
Such an object's ref has no replicas: this backend reads it from the store, and leaves
its removal to the store, which drops it with the row that pointed at it. Every other
call goes to the nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from callfs.backends.base import Backend, ObjectRef, Wrapping
from callfs.errors import CallFSError, NotFound
from callfs.metadata.base import MetadataStore
from callfs.objectcache import one_chunk


def is_inline(ref: ObjectRef) -> bool:
    """Whether ``ref`` names bytes the metadata store keeps (a storage-node object held
    by no node)."""
    return ref.backend == "localfs" and not ref.replicas


class InlineContents(Wrapping):
    """Delegates to ``inner`` (the storage nodes), except for the reads of objects the
    ``store`` keeps."""

    def __init__(self, inner: Backend, store: MetadataStore) -> None:
        super().__init__(inner)
        self.store = store

    async def read(
        self, ref: ObjectRef, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if not is_inline(ref):
            return await self.inner.read(ref, offset=offset, length=length)
        data = await self.store.read_content(ref.key)
        if data is None:
            raise NotFound(f"object {ref.key} is not in the metadata store")
        end = len(data) if length is None else offset + length
        return one_chunk(data[offset:end])

    async def delete(self, ref: ObjectRef) -> None:
        # The store removed the bytes with the row that pointed at them.
        if not is_inline(ref):
            await self.inner.delete(ref)

    async def delete_many(self, refs: Sequence[ObjectRef]) -> list[tuple[ObjectRef, CallFSError]]:
        return await self.inner.delete_many([ref for ref in refs if not is_inline(ref)])
