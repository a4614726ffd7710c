"""A backend that counts and times every byte operation of the backend it wraps.

The runtime wraps each backend it opens in one, so ``callfs_backend_ops_total`` and
``callfs_backend_op_duration_seconds`` ``{backend_type, operation}`` (and, for a
backend that calls storage nodes, ``callfs_proxy_operations_total{operation, result}``)
are counted in this one place, whoever calls the backend: the gateway, the
link-service or the reconciler. Operations are labelled ``read``, ``write`` (also
:meth:`~Backend.write_new`), ``delete`` and ``list``; placing an object
(``new_object``), ``instances``, ``start`` and ``close`` are passed through uncounted.

Each call of the interface is one operation, however many requests the backend
makes for it (a multipart upload is one ``write``, removing a batch of objects one
``delete``). A read is timed
until its stream is open, not while the caller drains it; a listing is timed over
the waits for the backend only, so a slow consumer does not count, and is observed
once it ends.

The cluster work of storage nodes (repair, scrubbing, rebalancing) uses the
unwrapped backend (``Runtime.nodes``) and has metrics of its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

from callfs.backends.base import Backend, ObjectRef, StoredObject, Wrapping, Written
from callfs.errors import CallFSError
from callfs.metrics import Metrics


class InstrumentedBackend(Wrapping):
    """Delegates to ``inner``, observing each byte operation in ``metrics``."""

    def __init__(self, inner: Backend, metrics: Metrics) -> None:
        super().__init__(inner)
        self.metrics = metrics

    def _observe(self, operation: str, seconds: float, ok: bool) -> None:
        backend_type = self.inner.name
        self.metrics.backend_ops.labels(backend_type, operation).inc()
        self.metrics.backend_duration.labels(backend_type, operation).observe(seconds)
        if self.inner.proxied:
            self.metrics.proxy_operations.labels(operation, "ok" if ok else "error").inc()

    @contextmanager
    def _operation(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            self._observe(operation, time.perf_counter() - started, ok)

    async def write(self, ref: ObjectRef, chunks: AsyncIterable[bytes]) -> Written:
        with self._operation("write"):
            return await self.inner.write(ref, chunks)

    async def write_new(
        self, path: str, chunks: AsyncIterable[bytes], *, prefer: Sequence[str] = ()
    ) -> tuple[ObjectRef, Written]:
        with self._operation("write"):
            return await self.inner.write_new(path, chunks, prefer=prefer)

    async def read(
        self, ref: ObjectRef, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        with self._operation("read"):
            return await self.inner.read(ref, offset=offset, length=length)

    async def delete(self, ref: ObjectRef) -> None:
        with self._operation("delete"):
            await self.inner.delete(ref)

    async def delete_many(self, refs: Sequence[ObjectRef]) -> list[tuple[ObjectRef, CallFSError]]:
        with self._operation("delete"):
            return await self.inner.delete_many(refs)

    async def list_objects(self, instance_id: str | None = None) -> AsyncIterator[StoredObject]:
        listing = self.inner.list_objects(instance_id)
        waited = 0.0
        ok = True
        try:
            while True:
                started = time.perf_counter()
                try:
                    stored = await anext(listing)
                except StopAsyncIteration:
                    return
                except BaseException:
                    ok = False
                    raise
                finally:
                    waited += time.perf_counter() - started
                yield stored
        finally:
            # Also when the caller stops early: what was listed so far is one listing.
            self._observe("list", waited, ok)
            if isinstance(listing, AsyncGenerator):
                await listing.aclose()
