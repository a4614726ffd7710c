"""The storage-node backend (``localfs``): files on the volumes of storage nodes, over gRPC.

Every object lives on up to ``replication`` nodes, its replicas: a new file goes to
the first nodes in the rendezvous ranking of its path that are up and have room, a
new version of a file to the nodes holding the current one where they are up. An
upload streams to every replica at once, a chunk at a time, and counts as stored
once ``write_quorum`` of them have fsynced the whole object with the same SHA-256;
a replica that fails meanwhile is dropped from that write. A read goes to the first
replica that answers and, when a node fails mid-stream, goes on from the same byte
on the next one; a replica whose node finds its bytes corrupted (a block that fails
its checksum) is passed over the same way and healed in the background, copied over
from the others. A node that does not answer is marked down until its health check
or any call to it succeeds again. One channel per node is opened on first use and
reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Mapping,
    Sequence,
)
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from callfs import logs
from callfs.backends.base import (
    DELETES_IN_FLIGHT,
    Backend,
    ObjectRef,
    StoredObject,
    Written,
    close_stream,
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
    ReplicaCorrupted,
)
from callfs.metrics import Metrics
from callfs.placement import rank, spread_over
from callfs.storage.inprocess import InProcessChannel, InProcessServer
from callfs.storage.v1 import storage_pb2, storage_pb2_grpc
from callfs.storage.wire import (
    READ_METHOD,
    WRITE_METHOD,
    as_is,
    encoded_chunk,
    read_chunk,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

SECRET_HEADER = "x-callfs-internal-secret"
DEFAULT_CHUNK_SIZE = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
LIST_BATCH = 1000
# A node with less free space than this takes no new files.
MIN_FREE_BYTES = 64 * 1024 * 1024
USAGE_TTL = 10.0
PROBE_INTERVAL = 2.0
# How long placement waits for a node marked down to accept connections before it
# refuses a write below the quorum: long enough for a node that is starting right now
# (a rolling restart), short enough that a real outage answers 503 at once.
RETURNING_WAIT = 0.5
# Objects removed per DeleteMany call (the most a node takes in one).
DELETE_BATCH = 1000
# Room for the message framing around a chunk.
_FRAMING = 1024
_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass
class _Node:
    """One storage node's address and its reused channel."""

    instance_id: str
    address: str
    channel: grpc.aio.Channel | InProcessChannel
    stub: storage_pb2_grpc.StorageNodeStub = field(init=False)
    health: health_pb2_grpc.HealthStub = field(init=False)
    write: Any = field(init=False)
    """``Write``, its requests given as wire bytes (chunks from
    :func:`~callfs.storage.wire.encoded_chunk`, encoded once for all replicas)."""
    read: Any = field(init=False)
    """``Read``, its answers each chunk's bytes (:func:`~callfs.storage.wire.read_chunk`)."""
    deletes_many: bool = True
    """Whether the node has ``DeleteMany`` (False once it answered UNIMPLEMENTED: a node
    of an older release, during a rolling upgrade)."""

    def __post_init__(self) -> None:
        self.stub = storage_pb2_grpc.StorageNodeStub(self.channel)  # type: ignore[no-untyped-call]
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.write = self.channel.stream_unary(
            WRITE_METHOD,
            request_serializer=as_is,
            response_deserializer=storage_pb2.WriteResponse.FromString,
        )
        self.read = self.channel.unary_stream(
            READ_METHOD,
            request_serializer=storage_pb2.ReadRequest.SerializeToString,
            response_deserializer=read_chunk,
        )


class StorageNodeBackend(Backend):
    """Stores objects on storage nodes; errors come back as domain errors."""

    name = "localfs"
    sha256_etags = True
    proxied = True

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
        replication: int = 1,
        write_quorum: int | None = None,
        draining: Sequence[str] = (),
        metrics: Metrics | None = None,
        interceptors: Callable[[str, str], Sequence[Any]] | None = None,
        in_process: Mapping[str, InProcessServer] | None = None,
    ) -> None:
        self._discovery = discovery
        self._secret: tuple[tuple[str, str], ...] = ((SECRET_HEADER, secret),)
        self._max_chunk = max_message_bytes - _FRAMING
        self._chunk_size = max(1, min(chunk_size, self._max_chunk))
        self._timeout = timeout
        self._min_free = min_free_bytes
        self._probe_interval = probe_interval
        self._replication = max(1, replication)
        self._quorum = min(write_quorum or self._replication, self._replication)
        self.draining = frozenset(draining)
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A restarted node is found within seconds, not after minutes of backoff.
            ("grpc.initial_reconnect_backoff_ms", 250),
            # A fresh channel gets fresh connections: with gRPC's process-wide subchannel
            # pool it would inherit the old one's reconnect backoff, and a node that has
            # just restarted would look down for seconds more.
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_reconnect_backoff_ms", int(probe_interval * 1000)),
        ]
        self._nodes: dict[str, _Node] = {}
        self._down: set[str] = set()
        self._usage: dict[str, tuple[float, tuple[int, int, int]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._metrics = metrics
        # (instance_id, address) -> the client interceptors of a channel to it (tracing).
        self._interceptors = interceptors
        # address -> the node serving it in this process (callfs dev): called without gRPC.
        self._in_process = dict(in_process or {})
        # (key, instance_id) -> the heal copying good bytes over that corrupted replica.
        self._heals: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._prober: asyncio.Task[None] | None = None
        discovery.on_change(self._on_change)

    # --- life cycle -----------------------------------------------------------------

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """A call's metadata: the internal secret, and the id of the request being served
        (``x-request-id``), which the node's log lines then carry."""
        rid = logs.request_id.get()
        if rid == logs.NO_REQUEST:
            return self._secret
        return (*self._secret, (logs.REQUEST_ID_HEADER, rid))

    async def start(self) -> None:
        """Start re-probing nodes marked down."""
        if self._prober is None:
            self._prober = asyncio.create_task(self._probe_down_nodes())

    async def close(self) -> None:
        """Stop probing and healing, and close every channel."""
        for heal in list(self._heals.values()):
            heal.cancel()
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
            self._prober = None
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            self._spawn(node.channel.close())
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def address(self, instance_id: str) -> str | None:
        """Where discovery says the node listens (None when it does not know it)."""
        return self._endpoints().get(instance_id)

    def node_status(self) -> dict[str, bool]:
        """Each known node's state now: ``instance_id -> up``."""
        return {instance_id: instance_id not in self._down for instance_id in self._endpoints()}

    # --- Backend ----------------------------------------------------------------------

    async def new_object(self, path: str) -> ObjectRef:
        """A fresh key on the best nodes for ``path`` that are up and have room.

        Raises:
            BackendUnavailable: fewer such nodes than the write quorum.
        """
        return ObjectRef(self.name, new_object_key(), await self._choose(path, skip=frozenset()))

    async def write_new(
        self, path: str, chunks: AsyncIterable[bytes], *, prefer: Sequence[str] = ()
    ) -> tuple[ObjectRef, Written]:
        """Store a new version of the file at ``path`` on its replicas.

        The replicas are the nodes of ``prefer`` (where the current version lives)
        that are up and have room, then the best others for ``path``. A node that does
        not answer, is cut off mid-call or is full before the quorum is lost is simply
        dropped; when too few are left, the upload starts again on other nodes as
        long as no more than the first chunk's worth of ``chunks`` was taken (kept for
        that: gRPC buffers sends, so a dead node may only show once a first piece
        went out). An upload that failed after more than that cannot be replayed: the
        error propagates, and no node keeps anything of it.

        Raises:
            BackendUnavailable: too few nodes are up with room, or the quorum was lost
                after the upload began.
        """
        body = _Replayable(chunks, keep=self._chunk_size)
        failed: set[str] = set()
        while True:
            ref = ObjectRef(self.name, new_object_key(), await self._choose(path, failed, prefer))
            try:
                written = await self._write(ref, body, failed)
            except BackendUnavailable as exc:
                if not body.replayable:
                    raise
                logger.warning("%s; placing %s on other nodes", exc.message, path)
                continue
            return ObjectRef(self.name, ref.key, written.replicas), written

    async def write(self, ref: ObjectRef, chunks: AsyncIterable[bytes]) -> Written:
        """Stream ``chunks`` to every replica of ``ref`` (see :meth:`_write`)."""
        return await self._write(ref, chunks, set())

    async def replicate(
        self,
        ref: ObjectRef,
        targets: Sequence[str],
        *,
        pace: Callable[[int], Awaitable[None]] | None = None,
    ) -> Written:
        """Copy the object of ``ref`` from its replicas onto ``targets`` (same key).

        The copy goes through this process, a chunk at a time; ``pace(bytes)`` is
        awaited after each chunk (a throttle). When ``ref.etag`` is given, the bytes
        read must have that SHA-256 before any target commits them: a target keeps
        what it had otherwise (the heal of a corrupted replica relies on it). The
        targets that stored it whole are in the result's ``replicas``.

        Raises:
            NotFound: no replica of ``ref`` has the object.
            ReplicaCorrupted: the bytes read do not have the SHA-256 ``ref.etag``.
            BackendUnavailable: no replica answers, or no target took the copy.
        """
        source = await self.read(ref)
        digest = hashlib.sha256() if ref.etag is not None else None

        async def paced() -> AsyncIterator[bytes]:
            async for chunk in source:
                if digest is not None:
                    digest.update(chunk)
                yield chunk
                if pace is not None:
                    await pace(len(chunk))
            if digest is not None and digest.hexdigest() != ref.etag:
                raise ReplicaCorrupted(
                    f"the bytes of {ref.key} read from {', '.join(ref.replicas)}"
                    " do not match its SHA-256"
                )

        try:
            copy = ObjectRef(self.name, ref.key, tuple(targets))
            return await self._write(copy, paced(), set(), quorum=1)
        finally:
            await close_stream(source)

    async def choose_more(
        self, path: str, count: int, *, exclude: AbstractSet[str]
    ) -> tuple[str, ...]:
        """Up to ``count`` nodes for another replica of ``path``: up, with room, not in
        ``exclude`` (the nodes that hold it), best first in ``path``'s ranking after
        spreading away from the failure domains of ``exclude`` (possibly none).
        """
        live = self._placeable(exclude)
        more = await spread_over(
            rank(path, live),
            self._discovery.domains(),
            count,
            self._has_room,
            chosen=sorted(exclude),
        )
        return tuple(more)

    async def ideal(
        self, path: str, *, present: AbstractSet[str], holding: AbstractSet[str]
    ) -> tuple[str, ...]:
        """The nodes ``path`` belongs on now, among ``present`` (known, not gone): the
        placement of a new file over them, draining nodes left out. A node in ``holding``
        (it has the file) needs no room.
        """
        candidates = [i for i in present if i not in self.draining]

        async def usable(instance_id: str) -> bool:
            return instance_id in holding or await self._has_room(instance_id)

        return tuple(
            await spread_over(
                rank(path, candidates), self._discovery.domains(), self._replication, usable
            )
        )

    @property
    def replication(self) -> int:
        """Replicas a file should have."""
        return self._replication

    async def _write(
        self,
        ref: ObjectRef,
        chunks: AsyncIterable[bytes],
        failed: set[str],
        *,
        quorum: int | None = None,
    ) -> Written:
        """Stream ``chunks`` to the replicas of ``ref`` at once; add those that fail to
        ``failed``.

        If ``chunks`` raises, every stream is closed without ``end``: the nodes drop
        their temp files before they answer, and the original exception propagates.
        If fewer than the write quorum take the whole object, the copies that did are
        removed again.

        Raises:
            BackendUnavailable: the quorum was lost.
        """
        uploads = [_Upload(self, self._node(i), ref.key) for i in ref.replicas if i not in failed]
        needed = min(self._quorum if quorum is None else quorum, len(ref.replicas))
        group = _Uploads(uploads, quorum=needed, failed=failed)
        try:
            await group.each(_Upload.begin)
            size = 0
            async for piece in _pieces(chunks, self._chunk_size, self._max_chunk):
                message = encoded_chunk(piece)
                await group.each(functools.partial(_Upload.send, message=message))
                size += len(piece)
            await group.each(functools.partial(_Upload.finish, size=size))
            stored = group.agreeing()
        except BaseException:
            await group.abandon()
            raise
        for upload in stored:
            self._mark_up(upload.node.instance_id)
        response = stored[0].response
        assert response is not None
        return Written(
            size=response.size,
            sha256=response.sha256,
            etag=response.sha256,
            replicas=tuple(upload.node.instance_id for upload in stored),
        )

    async def read(
        self, ref: ObjectRef, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Open the object on its first replica that answers (NotFound and
        BackendUnavailable raise here), and go on from the same byte on the next one
        when that node fails mid-stream.

        A replica whose node reports its bytes corrupted (at open or mid-stream) is
        passed over the same way; once the read went on elsewhere, that replica is
        healed in the background (see :meth:`_heal_later`).
        """
        order = sorted(ref.replicas, key=lambda instance_id: instance_id in self._down)
        rotten: dict[str, bool] = {}
        stream, current, rest = await self._open_replica(ref, order, offset, length, rotten)
        return self._resumed(ref, stream, current, rest, offset, length, rotten)

    async def _open_replica(
        self,
        ref: ObjectRef,
        order: list[str],
        offset: int,
        length: int | None,
        rotten: dict[str, bool],
        *,
        again: bool = True,
    ) -> tuple[AsyncIterator[bytes], str, list[str]]:
        """The stream of the first of ``order`` that opens the object, its node, and the
        replicas after it.

        When none opens, the nodes that did not answer at all are asked once more
        (``again``): their channels were dropped, and a fresh one finds a node that
        came back since the old one last tried to connect (a rolling restart).

        A replica found corrupted is added to ``rotten`` (this read's corrupted
        replicas, each with whether its heal is scheduled); once one opens, the heals
        not scheduled yet are.

        Raises:
            NotFound: no replica has the object.
            BackendUnavailable: no replica that might have it answers (ReplicaCorrupted
                when the first error was a corrupted replica).
        """
        errors: list[CallFSError] = []
        for index, instance_id in enumerate(order):
            try:
                node = self._node(instance_id)
                request = storage_pb2.ReadRequest(
                    path=ref.key, offset=offset, chunk_size=self._chunk_size
                )
                if length is not None:
                    request.length = length
                call = node.read(request, metadata=self._metadata)
                stream = await prefetched(self._receive(node, call))
            except CallFSError as exc:
                errors.append(exc)
                if isinstance(exc, ReplicaCorrupted):
                    rotten.setdefault(instance_id, False)
                if len(order) > 1:
                    logger.warning("replica %s of %s: %s", instance_id, ref.key, exc.message)
                continue
            self._heal_later(ref, rotten)
            return stream, instance_id, order[index + 1 :]
        unreachable = [
            instance_id
            for instance_id, error in zip(order, errors, strict=True)
            if isinstance(error, NodeUnreachable)
        ]
        if again and unreachable:
            try:
                return await self._open_replica(
                    ref, unreachable, offset, length, rotten, again=False
                )
            except NotFound:
                pass
            except BackendUnavailable:
                pass
        if errors and all(isinstance(error, NotFound) for error in errors):
            raise NotFound()
        unavailable = [error for error in errors if not isinstance(error, NotFound)]
        raise unavailable[0] if unavailable else BackendUnavailable("the file has no replica")

    async def _resumed(
        self,
        ref: ObjectRef,
        stream: AsyncIterator[bytes],
        current: str,
        rest: list[str],
        offset: int,
        length: int | None,
        rotten: dict[str, bool],
    ) -> AsyncIterator[bytes]:
        """``stream`` (from ``current``), continued on the replicas of ``rest`` when its
        node fails or finds its bytes corrupted (then ``current`` joins ``rotten``).
        """
        sent = 0
        try:
            while True:
                try:
                    async for chunk in stream:
                        sent += len(chunk)
                        yield chunk
                    return
                except BackendUnavailable as exc:
                    if isinstance(exc, ReplicaCorrupted):
                        rotten.setdefault(current, False)
                    if not rest:
                        raise
                    logger.warning(
                        "%s mid-read of %s; going on from byte %d on another replica",
                        exc.message,
                        ref.key,
                        offset + sent,
                    )
                await close_stream(stream)
                remaining = None if length is None else length - sent
                stream, current, rest = await self._open_replica(
                    ref, rest, offset + sent, remaining, rotten
                )
        finally:
            await close_stream(stream)

    def _heal_later(self, ref: ObjectRef, rotten: dict[str, bool]) -> None:
        """Schedule the heal of each replica of ``rotten`` not scheduled yet: a copy of
        the object from the other replicas over it, under the same key (a node's write
        replaces an object atomically), checked against ``ref.etag`` when known.

        One heal per corrupted replica runs at a time, whichever reads found it.
        """
        sources = tuple(i for i in ref.replicas if i not in rotten)
        for instance_id, scheduled in rotten.items():
            rotten[instance_id] = True
            if scheduled or not sources or (ref.key, instance_id) in self._heals:
                continue
            if self._metrics is not None:
                self._metrics.scrub_mismatches.labels("read").inc()
            source = ObjectRef(self.name, ref.key, sources, etag=ref.etag)
            self._heals[(ref.key, instance_id)] = self._spawn(self._heal(source, instance_id))

    async def _heal(self, source: ObjectRef, instance_id: str) -> None:
        """Copy the object of ``source`` over its corrupted replica on ``instance_id``;
        say how it went in one WARNING.
        """
        where = ", ".join(source.replicas)
        try:
            written = await self.replicate(source, [instance_id])
        except CallFSError as exc:
            logger.warning(
                "replica %s of %s is corrupted and could not be healed from %s: %s",
                instance_id,
                source.key,
                where,
                exc.message,
            )
            return
        except Exception:
            logger.warning(
                "replica %s of %s is corrupted and could not be healed from %s",
                instance_id,
                source.key,
                where,
                exc_info=True,
            )
            return
        finally:
            self._heals.pop((source.key, instance_id), None)
        if self._metrics is not None:
            self._metrics.repaired_objects.inc()
            self._metrics.repaired_bytes.inc(written.size)
        logger.warning(
            "replica %s of %s was corrupted; healed from %s", instance_id, source.key, where
        )

    async def delete(self, ref: ObjectRef) -> None:
        """Remove the object from every replica; a missing one is fine.

        Raises:
            BackendUnavailable: a replica did not answer (after all were tried).
        """
        if not ref.replicas:
            raise BackendUnavailable("the object names no storage node")
        request = storage_pb2.DeleteRequest(path=ref.key, missing_ok=True)

        async def delete_on(instance_id: str) -> None:
            node = self._node(instance_id)
            await self._unary(node, node.stub.Delete, request)

        outcomes = await asyncio.gather(
            *(delete_on(instance_id) for instance_id in ref.replicas), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def delete_many(self, refs: Sequence[ObjectRef]) -> list[tuple[ObjectRef, CallFSError]]:
        """Remove the objects from every replica, a ``DeleteMany`` call per node and
        :data:`DELETE_BATCH` objects, the calls to all nodes at once. An object fails
        with any one of its replicas' calls (its other replicas may be gone)."""
        failures: dict[ObjectRef, CallFSError] = {}
        held: dict[str, list[ObjectRef]] = {}
        for ref in refs:
            if not ref.replicas:
                failures[ref] = BackendUnavailable("the object names no storage node")
            for instance_id in ref.replicas:
                held.setdefault(instance_id, []).append(ref)

        async def delete_on(instance_id: str, batch: list[ObjectRef]) -> None:
            try:
                await self._delete_batch(instance_id, [ref.key for ref in batch])
            except CallFSError as exc:
                for ref in batch:
                    failures.setdefault(ref, exc)

        await asyncio.gather(
            *(
                delete_on(instance_id, on_node[start : start + DELETE_BATCH])
                for instance_id, on_node in held.items()
                for start in range(0, len(on_node), DELETE_BATCH)
            )
        )
        return [(ref, failures[ref]) for ref in refs if ref in failures]

    async def _delete_batch(self, instance_id: str, keys: list[str]) -> None:
        """Remove ``keys`` from one node: in one call, or one by one from a node without
        ``DeleteMany``."""
        node = self._node(instance_id)
        if node.deletes_many:
            try:
                await node.stub.DeleteMany(
                    storage_pb2.DeleteManyRequest(paths=keys),
                    metadata=self._metadata,
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise self._translate(node, exc) from None
                logger.info("storage node %s has no DeleteMany: deleting one by one", instance_id)
                node.deletes_many = False
            else:
                self._mark_up(instance_id)
                return
        for start in range(0, len(keys), DELETES_IN_FLIGHT):
            await asyncio.gather(
                *(
                    self._unary(
                        node, node.stub.Delete, storage_pb2.DeleteRequest(path=key, missing_ok=True)
                    )
                    for key in keys[start : start + DELETES_IN_FLIGHT]
                )
            )

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

    async def usage(self, instance_id: str, *, wait: float | None = None) -> tuple[int, int, int]:
        """``(used, free, total)`` bytes of the node's volume; with ``wait``, the call
        waits up to that many seconds for the node to accept connections.

        Raises:
            BackendUnavailable: the node is unknown or does not answer.
        """
        node = self._node(instance_id)
        response = await self._unary(
            node,
            node.stub.Usage,
            storage_pb2.UsageRequest(),
            timeout=wait,
            wait_for_ready=wait is not None,
        )
        usage = (response.used_bytes, response.free_bytes, response.total_bytes)
        self._usage[instance_id] = (time.monotonic(), usage)
        return usage

    async def _choose(
        self, path: str, skip: AbstractSet[str], prefer: Sequence[str] = ()
    ) -> tuple[str, ...]:
        """Up to ``replication`` nodes for ``path`` that are up, not in ``skip`` and have
        room: those of ``prefer`` first, then the best others in ``path``'s ranking,
        spread across failure domains (:func:`callfs.placement.spread`).

        Raises:
            BackendUnavailable: fewer such nodes than the write quorum.
        """
        live = self._placeable(skip)
        chosen: list[str] = []
        for instance_id in dict.fromkeys(i for i in prefer if i in live):
            if len(chosen) < self._replication and await self._has_room(instance_id):
                chosen.append(instance_id)
        chosen += await spread_over(
            rank(path, live),
            self._discovery.domains(),
            self._replication - len(chosen),
            self._has_room,
            chosen=chosen,
        )
        if len(chosen) < self._quorum:
            # "Down" is what the last call saw: a node may be back before its next
            # probe (a rolling restart). Ask the ones marked down before refusing.
            returning = self._placeable(skip, down=True)
            await self._await_returning(returning, self._replication - len(chosen))
            chosen += await spread_over(
                rank(path, [i for i in returning if i not in self._down]),
                self._discovery.domains(),
                self._replication - len(chosen),
                self._has_room,
                chosen=chosen,
            )
        if not chosen or len(chosen) < self._quorum:
            raise BackendUnavailable(
                "no storage node is available"
                if not chosen
                else f"only {len(chosen)} storage nodes can take the file; {self._quorum} must"
            )
        return tuple(chosen)

    async def _await_returning(self, returning: Sequence[str], wanted: int) -> None:
        """Ask the nodes of ``returning`` (marked down) for their usage, each call waiting
        up to :data:`RETURNING_WAIT` for its node to accept connections (it may be coming
        back from a restart); return once ``wanted`` of them answered, or all calls ended.
        A node that answers is marked up with its usage noted, also after the return.
        """
        wait = min(self._timeout, self._probe_interval, RETURNING_WAIT)

        async def answers(instance_id: str) -> bool:
            try:
                await self.usage(instance_id, wait=wait)
            except CallFSError:
                return False
            return True

        answered = 0
        for ask in asyncio.as_completed([self._spawn(answers(i)) for i in returning]):
            answered += await ask
            if answered >= wanted:
                return

    def _placeable(self, exclude: AbstractSet[str], *, down: bool = False) -> list[str]:
        """The nodes discovery knows that may take a new replica: not draining, not in
        ``exclude``, and up (with ``down``: those marked down instead).
        """
        return [
            i
            for i in self._endpoints()
            if (i in self._down) == down and i not in exclude and i not in self.draining
        ]

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

    async def _unary(
        self,
        node: _Node,
        method: Any,
        request: Any,
        *,
        timeout: float | None = None,
        wait_for_ready: bool = False,
    ) -> Any:
        try:
            response = await method(
                request,
                metadata=self._metadata,
                timeout=self._timeout if timeout is None else timeout,
                wait_for_ready=wait_for_ready,
            )
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
                yield response
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
        if code == grpc.StatusCode.DATA_LOSS:
            # The node is well and refused to send a damaged block: another replica serves.
            logger.warning("storage node %s holds corrupted data: %s", instance_id, exc.details())
            return ReplicaCorrupted(
                f"storage node {instance_id} holds a corrupted replica: {exc.details()}"
            )
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
            local = self._in_process.get(address)
            channel = (
                InProcessChannel(local)
                if local is not None
                else grpc.aio.insecure_channel(
                    address,
                    options=self._options,
                    interceptors=None
                    if self._interceptors is None
                    else self._interceptors(instance_id, address),
                )
            )
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

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


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


class _Upload:
    """One replica's Write call: a header, chunks, an ``end``; failures come out as
    the domain errors of :meth:`StorageNodeBackend._translate`.
    """

    def __init__(self, backend: StorageNodeBackend, node: _Node, key: str) -> None:
        self.backend = backend
        self.node = node
        self.key = key
        self.call: Any = node.write(metadata=backend._metadata)
        self.response: storage_pb2.WriteResponse | None = None

    async def begin(self) -> None:
        header = storage_pb2.WriteHeader(path=self.key, overwrite=True, create_parents=True)
        await self._send(storage_pb2.WriteRequest(header=header).SerializeToString())

    async def send(self, message: bytes) -> None:
        """Send a chunk, as :func:`encoded_chunk` made it."""
        await self._send(message)

    async def finish(self, size: int) -> None:
        """Send ``end`` and wait for the node's answer: the object is then fsynced."""
        end = storage_pb2.WriteRequest(end=storage_pb2.WriteEnd(size=size))
        await self._send(end.SerializeToString())
        try:
            async with asyncio.timeout(self.backend._timeout):
                await _half_close(self.call)
                self.response = await self.call
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            self.call.cancel()
            raise self.backend._translate(self.node, exc) from None

    async def abandon(self) -> None:
        """End the call without ``end`` (the node drops its temp file), or, when the
        object was stored already, remove it again.
        """
        if self.response is None:
            await self.backend._abandon(self.call)
            return
        request = storage_pb2.DeleteRequest(path=self.key, missing_ok=True)
        try:
            await self.backend._unary(self.node, self.node.stub.Delete, request)
        except CallFSError as exc:
            logger.warning(
                "could not remove %s from %s (the reconciler will): %s",
                self.key,
                self.node.instance_id,
                exc.message,
            )

    async def _send(self, message: bytes) -> None:
        try:
            async with asyncio.timeout(self.backend._timeout):
                await self.call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError) as exc:
            error: BaseException = exc
            if not isinstance(exc, TimeoutError):
                error = await self.backend._final_error(self.call, exc)
            self.call.cancel()
            if isinstance(error, grpc.aio.AioRpcError | TimeoutError):
                raise self.backend._translate(self.node, error) from None
            raise


class _Uploads:
    """The replicas of one write, a step at a time: a replica whose step fails is
    dropped (and noted in ``failed``) as long as ``quorum`` of them go on.
    """

    def __init__(self, uploads: list[_Upload], *, quorum: int, failed: set[str]) -> None:
        self.live = uploads
        self.quorum = max(1, quorum)
        self.failed = failed

    async def each(self, step: Callable[[_Upload], Awaitable[None]]) -> None:
        """Run ``step`` on every live replica at once.

        Raises:
            BackendUnavailable: fewer than ``quorum`` replicas are left (the first
                failure's error).
        """
        if len(self.live) < self.quorum:
            raise BackendUnavailable("too few storage nodes for the write quorum")
        outcomes = await asyncio.gather(
            *(step(upload) for upload in self.live), return_exceptions=True
        )
        kept: list[_Upload] = []
        errors: list[BaseException] = []
        for upload, outcome in zip(self.live, outcomes, strict=True):
            if outcome is None:
                kept.append(upload)
                continue
            if not isinstance(outcome, CallFSError):
                # Not a node's failure (a cancellation, a bug): the whole write stops.
                await self._drop(upload)
                self.live = kept + self.live[len(kept) + len(errors) + 1 :]
                raise outcome
            errors.append(outcome)
            self.failed.add(upload.node.instance_id)
            logger.warning(
                "replica %s dropped from a write: %s", upload.node.instance_id, outcome.message
            )
            if upload.backend._metrics is not None:
                upload.backend._metrics.replica_write_failures.labels(upload.node.instance_id).inc()
        self.live = kept
        if len(kept) < self.quorum:
            raise errors[0]

    def agreeing(self) -> list[_Upload]:
        """The replicas that stored the object with the SHA-256 most of them report.

        Raises:
            BackendUnavailable: fewer than ``quorum`` agree.
        """
        digests = [upload.response.sha256 for upload in self.live if upload.response]
        common = max(set(digests), key=digests.count) if digests else None
        stored = [u for u in self.live if u.response and u.response.sha256 == common]
        if len(stored) < self.quorum:
            raise BackendUnavailable("the replicas did not store the same bytes")
        return stored

    async def abandon(self) -> None:
        """Leave nothing of this write on any live replica."""
        await asyncio.gather(*(self._drop(upload) for upload in self.live))
        self.live = []

    @staticmethod
    async def _drop(upload: _Upload) -> None:
        with contextlib.suppress(Exception):
            await upload.abandon()


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
