"""The storage-node backend (``localfs``): files on the volumes of storage nodes, over gRPC.

A new file goes to the first node in the rendezvous ranking of its path that is up
and has room (the next one when that node does not answer before the upload began);
an existing file is always read from the node its ref names. A node that does not
answer is marked down until its health check or any call to it succeeds again. One
channel per node is opened on first use and reused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from callfs.backends.base import (
    Backend,
    ObjectRef,
    StoredObject,
    Written,
    new_object_key,
    prefetched,
)
from callfs.discovery.base import Discovery
from callfs.errors import (
    AlreadyExists,
    BackendUnavailable,
    CallFSError,
    NodeUnreachable,
    NotFound,
)
from callfs.placement import rank
from callfs.storage.v1 import storage_pb2, storage_pb2_grpc

logger = logging.getLogger(__name__)

SECRET_HEADER = "x-callfs-internal-secret"
DEFAULT_CHUNK_SIZE = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
LIST_BATCH = 1000
# A node with less free space than this takes no new files.
MIN_FREE_BYTES = 64 * 1024 * 1024
USAGE_TTL = 10.0
PROBE_INTERVAL = 2.0
# Room for the message framing around a chunk.
_FRAMING = 1024
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass
class _Node:
    """One storage node's address and its reused channel."""

    instance_id: str
    address: str
    channel: grpc.aio.Channel
    stub: storage_pb2_grpc.StorageNodeStub = field(init=False)
    health: health_pb2_grpc.HealthStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = storage_pb2_grpc.StorageNodeStub(self.channel)  # type: ignore[no-untyped-call]
        self.health = health_pb2_grpc.HealthStub(self.channel)


class StorageNodeBackend(Backend):
    """Stores objects on storage nodes; errors come back as domain errors."""

    name = "localfs"

    def __init__(
        self,
        discovery: Discovery,
        secret: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        min_free_bytes: int = MIN_FREE_BYTES,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self._discovery = discovery
        self._metadata = ((SECRET_HEADER, secret),)
        self._max_chunk = max_message_bytes - _FRAMING
        self._chunk_size = max(1, min(chunk_size, self._max_chunk))
        self._timeout = timeout
        self._min_free = min_free_bytes
        self._probe_interval = probe_interval
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A restarted node is found within seconds, not after minutes of backoff.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", int(probe_interval * 1000)),
        ]
        self._nodes: dict[str, _Node] = {}
        self._down: set[str] = set()
        self._usage: dict[str, tuple[float, tuple[int, int, int]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prober: asyncio.Task[None] | None = None
        discovery.on_change(self._on_change)

    # --- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start re-probing nodes marked down."""
        if self._prober is None:
            self._prober = asyncio.create_task(self._probe_down_nodes())

    async def close(self) -> None:
        """Stop probing and close every channel."""
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
            self._prober = None
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            self._spawn(node.channel.close())
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def node_status(self) -> dict[str, bool]:
        """Each known node's state now: ``instance_id -> up``."""
        return {instance_id: instance_id not in self._down for instance_id in self._endpoints()}

    # --- Backend ----------------------------------------------------------------------

    async def new_object(self, path: str) -> ObjectRef:
        """A fresh key on the best node for ``path`` that is up and has room.

        Raises:
            BackendUnavailable: no node is up with room.
        """
        return ObjectRef(self.name, new_object_key(), await self._choose(path, skip=frozenset()))

    async def write_new(self, path: str, chunks: AsyncIterable[bytes]) -> tuple[ObjectRef, Written]:
        """Store a new file on the best node for ``path`` that takes it.

        A node that does not answer (it is marked down), is cut off mid-call or is full
        makes way for the next node in the ranking, so a node that has just died costs
        no failed upload. The first
        chunk's worth of ``chunks`` is kept for that: gRPC buffers sends, so a dead
        node may only show once a first piece went out. An upload that failed after
        more than that was taken cannot be replayed: the error propagates, and no
        node keeps anything of it.

        Raises:
            BackendUnavailable: no node is up with room, or the chosen node failed
                after the upload began.
        """
        body = _Replayable(chunks, keep=self._chunk_size)
        failed: set[str] = set()
        while True:
            instance_id = await self._choose(path, skip=failed)
            ref = ObjectRef(self.name, new_object_key(), instance_id)
            try:
                return ref, await self.write(ref, body)
            except BackendUnavailable as exc:
                # Unreachable, cut off mid-call, full: a new file may go to the next node.
                if not body.replayable:
                    raise
                failed.add(instance_id)
                logger.warning("%s; placing %s on the next node", exc.message, path)

    async def write(self, ref: ObjectRef, chunks: AsyncIterable[bytes]) -> Written:
        """Stream ``chunks`` to the ref's node, then its ``end`` message.

        If ``chunks`` raises, the stream is closed without ``end``: the node drops
        the temp file before it answers, and the original exception propagates.
        """
        node = self._node(ref.instance_id)
        call = node.stub.Write(metadata=self._metadata)
        in_call = True
        try:
            header = storage_pb2.WriteHeader(path=ref.key, overwrite=True, create_parents=True)
            await self._send(call, storage_pb2.WriteRequest(header=header))
            size = 0
            in_call = False
            async for piece in _pieces(chunks, self._chunk_size, self._max_chunk):
                in_call = True
                await self._send(call, storage_pb2.WriteRequest(chunk=piece))
                size += len(piece)
                in_call = False
            in_call = True
            await self._send(call, storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=size)))
            async with asyncio.timeout(self._timeout):
                await _half_close(call)
                response = await call
        except Exception as exc:
            if not in_call:
                await self._abandon(call)
                raise
            if isinstance(exc, grpc.aio.AioRpcError | asyncio.InvalidStateError):
                exc = await self._final_error(call, exc)
            call.cancel()
            if isinstance(exc, grpc.aio.AioRpcError | TimeoutError):
                raise self._translate(node, exc) from None
            raise
        except BaseException:
            call.cancel()
            raise
        self._mark_up(node.instance_id)
        return Written(size=response.size, sha256=response.sha256, etag=response.sha256)

    async def read(
        self, ref: ObjectRef, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Open the object for streaming; NotFound and BackendUnavailable raise here."""
        node = self._node(ref.instance_id)
        request = storage_pb2.ReadRequest(path=ref.key, offset=offset, chunk_size=self._chunk_size)
        if length is not None:
            request.length = length
        call = node.stub.Read(request, metadata=self._metadata)
        return await prefetched(self._receive(node, call))

    async def delete(self, ref: ObjectRef) -> None:
        """Remove the object from its node; a missing one is fine."""
        node = self._node(ref.instance_id)
        request = storage_pb2.DeleteRequest(path=ref.key, missing_ok=True)
        await self._unary(node, node.stub.Delete, request)

    def instances(self) -> list[str | None]:
        """Every storage node discovery knows now, up or down."""
        return list(self._endpoints())

    async def list_objects(self, instance_id: str | None = None) -> AsyncIterator[StoredObject]:
        """Every file on the node's volume (temp files of writes in progress left out).

        The node checks that it is ``instance_id``, so an address that discovery got
        wrong fails the listing instead of passing off one node's files as another's.

        Raises:
            BackendUnavailable: the node is unknown, is another node, or does not
                answer (also mid-stream).
        """
        node = self._node(instance_id)
        request = storage_pb2.ListRequest(batch_size=LIST_BATCH, instance_id=node.instance_id)
        call = node.stub.List(request, metadata=self._metadata)
        try:
            while True:
                try:
                    async with asyncio.timeout(self._timeout):
                        response = await call.read()
                except (grpc.aio.AioRpcError, TimeoutError) as exc:
                    raise self._translate(node, exc) from None
                if response is grpc.aio.EOF:
                    break
                for listed in response.objects:
                    modified = datetime.fromtimestamp(listed.mtime_ns / 1e9, UTC)
                    yield StoredObject(listed.key, listed.size, modified)
        finally:
            call.cancel()
        self._mark_up(node.instance_id)

    async def ping(self) -> None:
        """Succeed when at least one node answers.

        Raises:
            BackendUnavailable: no node is known, or none answers.
        """
        instances = list(self._endpoints())
        if not instances:
            raise BackendUnavailable("no storage node is available")
        answers = await asyncio.gather(
            *(self.usage(instance_id) for instance_id in instances), return_exceptions=True
        )
        for answer in answers:
            if not isinstance(answer, BaseException):
                return
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, CallFSError):
                raise answer
        raise BackendUnavailable("no storage node answers")

    async def usage(self, instance_id: str) -> tuple[int, int, int]:
        """``(used, free, total)`` bytes of the node's volume.

        Raises:
            BackendUnavailable: the node is unknown or does not answer.
        """
        node = self._node(instance_id)
        response = await self._unary(node, node.stub.Usage, storage_pb2.UsageRequest())
        usage = (response.used_bytes, response.free_bytes, response.total_bytes)
        self._usage[instance_id] = (time.monotonic(), usage)
        return usage

    async def _choose(self, path: str, *, skip: AbstractSet[str]) -> str:
        """The first node in ``path``'s ranking that is up, not in ``skip`` and has room.

        Raises:
            BackendUnavailable: no such node.
        """
        candidates = [i for i in self._endpoints() if i not in self._down and i not in skip]
        for instance_id in rank(path, candidates):
            if await self._has_room(instance_id):
                return instance_id
        raise BackendUnavailable("no storage node is available")

    # --- calls ------------------------------------------------------------------------

    async def _abandon(self, call: Any) -> None:
        """End a write without ``end`` and wait until the node has dropped it."""
        try:
            async with asyncio.timeout(self._timeout):
                await _half_close(call)
                await call
        except (grpc.aio.AioRpcError, TimeoutError):
            pass
        finally:
            call.cancel()

    async def _final_error(self, call: Any, error: Exception) -> Exception:
        """The status the node ended the call with, once a send failed.

        A send that fails because the node already answered reports a generic
        INTERNAL error; the call's own outcome carries the node's status.
        """
        try:
            async with asyncio.timeout(self._timeout):
                await call
        except (grpc.aio.AioRpcError, TimeoutError) as final:
            return final
        return error

    async def _send(self, call: Any, message: storage_pb2.WriteRequest) -> None:
        async with asyncio.timeout(self._timeout):
            await call.write(message)

    async def _unary(self, node: _Node, method: Any, request: Any) -> Any:
        try:
            response = await method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._translate(node, exc) from None
        self._mark_up(node.instance_id)
        return response

    async def _receive(self, node: _Node, call: Any) -> AsyncIterator[bytes]:
        try:
            while True:
                async with asyncio.timeout(self._timeout):
                    response = await call.read()
                if response is grpc.aio.EOF:
                    break
                yield response.chunk
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            raise self._translate(node, exc) from None
        finally:
            call.cancel()
        self._mark_up(node.instance_id)

    def _translate(self, node: _Node, exc: BaseException) -> CallFSError:
        """The one translation of a failed call into the domain error a caller sees."""
        instance_id = node.instance_id
        unavailable = BackendUnavailable(f"storage node {instance_id} is unavailable")
        unreachable = NodeUnreachable(f"storage node {instance_id} is unavailable")
        if not isinstance(exc, grpc.aio.AioRpcError):
            logger.warning("storage node %s did not answer in %.1fs", instance_id, self._timeout)
            self._mark_down(node)
            return unreachable
        code = exc.code()
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound()
        if code == grpc.StatusCode.ALREADY_EXISTS:
            return AlreadyExists()
        if code in _UNREACHABLE:
            self._mark_down(node)
            return unreachable
        if code == grpc.StatusCode.UNAUTHENTICATED:
            logger.error(
                "storage node %s refused the internal secret: set the same "
                "auth.internal_proxy_secret (CALLFS_AUTH_INTERNAL_PROXY_SECRET) on every role",
                instance_id,
            )
            return unavailable
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            logger.error("storage node %s is out of room: %s", instance_id, exc.details())
            self._usage[instance_id] = (time.monotonic(), (0, 0, 0))
            return BackendUnavailable(f"storage node {instance_id} is full")
        logger.error("storage node %s answered %s: %s", instance_id, code.name, exc.details())
        return unavailable

    # --- nodes ------------------------------------------------------------------------

    def _endpoints(self) -> Mapping[str, str]:
        return self._discovery.endpoints()

    def _node(self, instance_id: str | None) -> _Node:
        address = self._endpoints().get(instance_id) if instance_id else None
        if instance_id is None or address is None:
            raise BackendUnavailable(f"storage node {instance_id} is not available")
        node = self._nodes.get(instance_id)
        if node is None or node.address != address:
            if node is not None:
                self._retire(node)
            channel = grpc.aio.insecure_channel(address, options=self._options)
            node = _Node(instance_id, address, channel)
            self._nodes[instance_id] = node
        return node

    def _on_change(self, endpoints: Mapping[str, str]) -> None:
        """Close the channels of nodes that left or moved."""
        for instance_id, node in list(self._nodes.items()):
            if endpoints.get(instance_id) != node.address:
                self._retire(node)
        self._down.intersection_update(endpoints)
        for instance_id in set(self._usage) - set(endpoints):
            del self._usage[instance_id]

    async def _has_room(self, instance_id: str) -> bool:
        cached = self._usage.get(instance_id)
        if cached is not None and time.monotonic() - cached[0] < USAGE_TTL:
            return cached[1][1] >= self._min_free
        try:
            _used, free, _total = await self.usage(instance_id)
        except CallFSError:
            return False
        return free >= self._min_free

    def _mark_down(self, node: _Node) -> None:
        if node.instance_id not in self._down:
            self._down.add(node.instance_id)
            logger.warning("storage node %s is down", node.instance_id)
        self._retire(node)

    def _retire(self, node: _Node) -> None:
        """Drop the node's channel: a fresh one connects at once, where the old one
        would wait out its reconnect backoff after the node comes back.
        """
        if self._nodes.get(node.instance_id) is node:
            del self._nodes[node.instance_id]
            self._spawn(node.channel.close(grace=self._timeout))

    def _mark_up(self, instance_id: str) -> None:
        if instance_id in self._down:
            self._down.discard(instance_id)
            logger.info("storage node %s is up again", instance_id)

    async def _probe_down_nodes(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            down = [i for i in self._down if i in self._endpoints()]
            if down:
                await asyncio.gather(*(self._probe(i) for i in down))

    async def _probe(self, instance_id: str) -> None:
        """Mark the node up if its health service says SERVING."""
        try:
            node = self._node(instance_id)
        except CallFSError:
            return
        try:
            response = await node.health.Check(
                health_pb2.HealthCheckRequest(), timeout=min(self._timeout, self._probe_interval)
            )
        except grpc.aio.AioRpcError:
            self._retire(node)
            return
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            self._mark_up(instance_id)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _half_close(call: Any) -> None:
    """Tell the node that no message follows.

    On a call the node has already ended (it died, or answered early) grpc raises its
    internal ``ExecuteBatchError`` here instead of the call's status. Awaiting the
    call, which every caller does next, reports that status, so this error is dropped.
    """
    try:
        await call.done_writing()
    except Exception as exc:
        logger.debug("half-close of a write failed: %r", exc)


class _Replayable:
    """An upload body whose beginning (up to ``keep`` bytes) is kept, so an attempt that
    failed having taken no more than that can start again, on another node, from byte 0.
    """

    def __init__(self, chunks: AsyncIterable[bytes], keep: int) -> None:
        self._source = aiter(chunks)
        self._keep = keep
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self.replayable = True

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pull()

    async def _pull(self) -> AsyncIterator[bytes]:
        if not self.replayable:
            raise RuntimeError("the upload body was taken beyond what can be replayed")
        for chunk in list(self._kept):
            yield chunk
        while True:
            try:
                chunk = await anext(self._source)
            except StopAsyncIteration:
                return
            if self.replayable and self._kept_bytes + len(chunk) <= self._keep:
                self._kept.append(chunk)
                self._kept_bytes += len(chunk)
            else:
                self.replayable = False
                self._kept.clear()
            yield chunk


async def _pieces(chunks: AsyncIterable[bytes], target: int, limit: int) -> AsyncIterator[bytes]:
    """``chunks`` as messages of about ``target`` bytes (never over ``limit``).

    Small chunks are joined; a large chunk passes through without a copy.
    """
    buffer: list[bytes] = []
    buffered = 0
    async for chunk in chunks:
        if not chunk:
            continue
        if not buffer and len(chunk) >= target:
            for piece in _split(chunk, limit):
                yield piece
            continue
        buffer.append(chunk)
        buffered += len(chunk)
        if buffered >= target:
            for piece in _split(b"".join(buffer), limit):
                yield piece
            buffer, buffered = [], 0
    if buffer:
        for piece in _split(b"".join(buffer), limit):
            yield piece


def _split(data: bytes, limit: int) -> list[bytes]:
    if len(data) <= limit:
        return [data]
    return [data[start : start + limit] for start in range(0, len(data), limit)]
