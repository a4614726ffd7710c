"""InstrumentedBackend: one place that counts and times every byte operation of the
backend it wraps, and otherwise passes everything through unchanged."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callfs.backends.base import Backend, ObjectRef, StoredObject, Written, new_object_key
from callfs.backends.inline import InlineContents
from callfs.backends.instrumented import InstrumentedBackend
from callfs.discovery.base import StaticDiscovery
from callfs.entry import BackendName
from callfs.errors import BackendUnavailable, NotFound
from callfs.metrics import Metrics
from callfs.runtime import open_runtime
from tests.support.harness import make_settings


class Broken(Exception):
    """What a client that goes away mid-upload raises in the body iterator."""


class MemoryBackend(Backend):
    """Objects in a dict; it remembers the calls it had."""

    def __init__(
        self, name: BackendName = "localfs", *, proxied: bool = False, down: bool = False
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.proxied = proxied  # type: ignore[misc]
        self.sha256_etags = True  # type: ignore[misc]
        self.objects: dict[str, bytes] = {}
        self.calls: list[tuple[object, ...]] = []
        self.down = down
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def instances(self) -> list[str | None]:
        return ["node-0", "node-1"]

    async def new_object(self, path: str) -> ObjectRef:
        self.calls.append(("new_object", path))
        return ObjectRef(self.name, new_object_key(), ("node-0",))

    async def write(self, ref: ObjectRef, chunks: AsyncIterable[bytes]) -> Written:
        self.calls.append(("write", ref.key))
        data = b"".join([chunk async for chunk in chunks])
        self.objects[ref.key] = data
        digest = hashlib.sha256(data).hexdigest()
        return Written(len(data), digest, digest, ref.replicas)

    async def write_new(
        self, path: str, chunks: AsyncIterable[bytes], *, prefer: Sequence[str] = ()
    ) -> tuple[ObjectRef, Written]:
        self.calls.append(("write_new", path, tuple(prefer)))
        ref = ObjectRef(self.name, new_object_key(), tuple(prefer) or ("node-0",))
        return ref, await self.write(ref, chunks)

    async def read(
        self, ref: ObjectRef, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        self.calls.append(("read", ref.key, offset, length))
        if self.down:
            raise BackendUnavailable("down")
        if ref.key not in self.objects:
            raise NotFound(ref.key)
        data = self.objects[ref.key]
        end = len(data) if length is None else offset + length

        async def stream() -> AsyncIterator[bytes]:
            for index in range(offset, end):
                yield data[index : index + 1]

        return stream()

    async def delete(self, ref: ObjectRef) -> None:
        self.calls.append(("delete", ref.key))
        self.objects.pop(ref.key, None)

    async def list_objects(self, instance_id: str | None = None) -> AsyncIterator[StoredObject]:
        self.calls.append(("list", instance_id))
        moment = datetime(2024, 1, 1, tzinfo=UTC)
        for key, data in sorted(self.objects.items()):
            if self.down:
                raise BackendUnavailable("down mid-listing")
            yield StoredObject(key, len(data), moment)


async def body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(backend: Backend, ref: ObjectRef, **kwargs: int) -> bytes:
    return b"".join([chunk async for chunk in await backend.read(ref, **kwargs)])


def ops(metrics: Metrics, backend: str, operation: str) -> float:
    labels = {"backend_type": backend, "operation": operation}
    return metrics.registry.get_sample_value("callfs_backend_ops_total", labels) or 0.0


def timed(metrics: Metrics, backend: str, operation: str) -> tuple[float, float]:
    """How many observations ``callfs_backend_op_duration_seconds`` has, and their sum."""
    labels = {"backend_type": backend, "operation": operation}
    get = metrics.registry.get_sample_value
    count = get("callfs_backend_op_duration_seconds_count", labels) or 0.0
    return count, get("callfs_backend_op_duration_seconds_sum", labels) or 0.0


def proxied(metrics: Metrics, operation: str, result: str) -> float:
    labels = {"operation": operation, "result": result}
    return metrics.registry.get_sample_value("callfs_proxy_operations_total", labels) or 0.0


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


async def test_it_passes_every_call_and_attribute_through(metrics: Metrics) -> None:
    inner = MemoryBackend("s3", proxied=False)
    backend = InstrumentedBackend(inner, metrics)

    assert (backend.name, backend.proxied, backend.sha256_etags) == ("s3", False, True)
    assert backend.instances() == ["node-0", "node-1"]
    await backend.start()
    assert inner.started
    ref = await backend.new_object("/a")
    written = await backend.write(ref, body(b"hel", b"lo"))
    assert written == Written(5, hashlib.sha256(b"hello").hexdigest(), written.etag, ("node-0",))
    assert await read_all(backend, ref, offset=1, length=3) == b"ell"
    placed, again = await backend.write_new("/b", body(b"x"), prefer=["node-1"])
    assert placed.replicas == ("node-1",) and again.size == 1
    listed = [stored.key async for stored in backend.list_objects("node-1")]
    assert sorted(listed) == sorted(inner.objects)
    await backend.delete(ref)
    assert ref.key not in inner.objects
    await backend.close()
    assert inner.closed

    assert ("read", ref.key, 1, 3) in inner.calls
    assert ("write_new", "/b", ("node-1",)) in inner.calls
    assert ("list", "node-1") in inner.calls
    # write_new is the inner backend's own, not new_object + write through the wrapper.
    assert ("new_object", "/b") not in inner.calls


async def test_each_operation_counts_once_under_its_backend_and_name(metrics: Metrics) -> None:
    backend = InstrumentedBackend(MemoryBackend("s3"), metrics)
    ref = await backend.new_object("/a")
    await backend.write(ref, body(b"data"))
    await backend.write_new("/b", body(b"more"))
    await read_all(backend, ref)
    assert len([stored async for stored in backend.list_objects()]) == 2
    await backend.delete(ref)

    counted = {
        operation: ops(metrics, "s3", operation)
        for operation in ("write", "read", "list", "delete", "new_object")
    }
    assert counted == {"write": 2.0, "read": 1.0, "list": 1.0, "delete": 1.0, "new_object": 0.0}
    for operation in ("write", "read", "list", "delete"):
        count, seconds = timed(metrics, "s3", operation)
        assert count == counted[operation] and seconds >= 0, operation
    assert ops(metrics, "localfs", "write") == 0.0
    # Not a storage-node backend: no proxy operations.
    assert proxied(metrics, "write", "ok") == 0.0


async def test_a_proxied_backend_counts_proxy_operations_by_result(metrics: Metrics) -> None:
    inner = MemoryBackend("localfs", proxied=True)
    backend = InstrumentedBackend(inner, metrics)
    ref = await backend.new_object("/a")
    await backend.write(ref, body(b"data"))
    await read_all(backend, ref)
    missing = ObjectRef("localfs", new_object_key(), ("node-0",))
    with pytest.raises(NotFound):
        await backend.read(missing)
    inner.down = True
    with pytest.raises(BackendUnavailable):
        await backend.read(ref)

    assert ops(metrics, "localfs", "read") == 3.0
    assert timed(metrics, "localfs", "read")[0] == 3.0
    assert proxied(metrics, "write", "ok") == 1.0
    assert proxied(metrics, "read", "ok") == 1.0
    assert proxied(metrics, "read", "error") == 2.0


async def test_a_failure_is_counted_and_propagates_unchanged(metrics: Metrics) -> None:
    backend = InstrumentedBackend(MemoryBackend("localfs", proxied=True), metrics)

    async def breaking() -> AsyncIterator[bytes]:
        yield b"part"
        raise Broken

    with pytest.raises(Broken):
        await backend.write_new("/a", breaking())
    with pytest.raises(Broken):
        await backend.write(await backend.new_object("/b"), breaking())

    assert ops(metrics, "localfs", "write") == 2.0
    assert proxied(metrics, "write", "error") == 2.0
    assert proxied(metrics, "write", "ok") == 0.0


async def test_a_cancelled_operation_is_counted_as_an_error(metrics: Metrics) -> None:
    backend = InstrumentedBackend(MemoryBackend("localfs", proxied=True), metrics)
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        started.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(backend.write_new("/a", stalled()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert proxied(metrics, "write", "error") == 1.0


async def test_a_read_is_timed_until_its_stream_is_open_not_while_it_is_drained(
    metrics: Metrics,
) -> None:
    backend = InstrumentedBackend(MemoryBackend("localfs", proxied=True), metrics)
    ref = await backend.new_object("/a")
    await backend.write(ref, body(b"ab"))

    stream = await backend.read(ref)
    assert timed(metrics, "localfs", "read")[0] == 1.0
    async for _ in stream:
        await asyncio.sleep(0.2)

    count, seconds = timed(metrics, "localfs", "read")
    assert (count, ops(metrics, "localfs", "read")) == (1.0, 1.0)
    assert seconds < 0.2


async def test_a_listing_is_one_operation_however_it_ends(metrics: Metrics) -> None:
    inner = MemoryBackend("localfs", proxied=True)
    backend = InstrumentedBackend(inner, metrics)
    for name in ("/a", "/b", "/c"):
        await backend.write_new(name, body(b"x"))

    # Read to the end, slowly: only the waits for the backend are timed.
    async for _ in backend.list_objects("node-0"):
        await asyncio.sleep(0.1)
    count, seconds = timed(metrics, "localfs", "list")
    assert count == 1.0 and seconds < 0.3
    assert proxied(metrics, "list", "ok") == 1.0

    # Left early: one listing, and not a failure.
    listing = backend.list_objects("node-0")
    async for _ in listing:
        break
    await listing.aclose()  # type: ignore[attr-defined]
    assert proxied(metrics, "list", "ok") == 2.0

    # The backend fails mid-listing.
    inner.down = True
    with pytest.raises(BackendUnavailable):
        async for _ in backend.list_objects("node-0"):
            pass
    assert proxied(metrics, "list", "error") == 1.0
    assert ops(metrics, "localfs", "list") == 3.0


async def test_the_runtime_wraps_each_backend_and_keeps_the_nodes_raw(tmp_path: Path) -> None:
    runtime = await open_runtime(
        make_settings(tmp_path, "sqlite", None), discovery=StaticDiscovery({})
    )
    try:
        localfs = runtime.backend("localfs")
        assert isinstance(localfs, InstrumentedBackend)
        # Between them, the reader of the bytes the metadata store keeps.
        assert isinstance(localfs.inner, InlineContents)
        assert localfs.inner.inner is runtime.nodes
        assert (localfs.name, localfs.proxied, localfs.sha256_etags) == ("localfs", True, True)
        assert localfs.metrics is runtime.metrics
    finally:
        await runtime.close()
